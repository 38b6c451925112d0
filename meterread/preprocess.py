"""Photo bytes -> model-ready RGB image + quality metrics, with OpenCV. Pure (no I/O).

Large JPEGs are decoded at reduced scale (libjpeg DCT scaling through `cv2.IMREAD_REDUCED_*`) when the model
input is much smaller than the photo; EXIF orientation is applied by OpenCV's decoder.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from meterread.config import DEFAULT_MAX_PIXELS

PREPROCESS_VERSION = "mr-pre-1"
# PNGs decode at full size (no DCT scaling), 3-6 bytes a pixel: their guard is this share of `max_pixels` (40 MP).
PNG_PIXEL_SHARE = 0.625
MIN_SIDE = 16
_REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


@dataclass(frozen=True)
class InputLayout:
    """How a model was trained to see a photo (saved in its `meterread.json`).

    `crop_display`: locate and rectify the register display first. `rows`: fold the (wide) image into that many
    stacked slices of the square input, so an 8-digit display gets `rows` times the horizontal resolution.
    `local_contrast`: then equalise lightness locally (`equalize_lightness`), so a faint register is stretched
    where it is. A `meterread.json` without a key means the default (older models)."""

    crop_display: bool = False
    rows: int = 1
    local_contrast: bool = False

    @classmethod
    def from_dict(cls, values: dict) -> InputLayout:
        return cls(
            crop_display=bool(values.get("crop_display", False)),
            rows=int(values.get("display_rows", 1)),
            local_contrast=bool(values.get("local_contrast", False)),
        )

    def to_dict(self) -> dict:
        return {"crop_display": self.crop_display, "display_rows": self.rows, "local_contrast": self.local_contrast}


class DecodeError(ValueError):
    """A photo that cannot become a model input; the message is the row's reason."""


@dataclass(frozen=True)
class Preprocessed:
    """Model input (`image`, RGB uint8, `size` x `size`) and facts about the original photo."""

    image: np.ndarray
    width: int
    height: int
    blur: float
    brightness: float


def sniff_format(data: bytes) -> str | None:
    """'jpeg', 'png' or None, from magic bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first SOF marker, without decoding pixels."""
    offset = 2
    while offset + 9 < len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            offset += 2
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return width, height
        offset += 2 + length
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the header of a JPEG or PNG; None when the header is unreadable."""
    kind = sniff_format(data)
    if kind == "png" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if kind == "jpeg":
        return _jpeg_size(data)
    return None


def reduction_factor(width: int, height: int, target: int) -> int:
    """Largest JPEG DCT scale (1, 2, 4, 8) that keeps the short side at least 2x the model input.

    The 2x margin leaves room for the final area resize to anti-alias.
    """
    short = min(width, height)
    factor = 1
    for candidate in (2, 4, 8):
        if short // candidate >= 2 * target:
            factor = candidate
    return factor


def describe_bytes(data: bytes) -> str:
    """Short printable description of what a non-image file starts with."""
    head = data[:16]
    if head.lstrip().lower().startswith((b"<!doctype", b"<html")):
        return "an HTML page"
    if all(32 <= byte < 127 or byte in (9, 10, 13) for byte in head):
        return f"text starting {head.decode('ascii')!r}"
    return f"unknown bytes {head[:8].hex()}"


def _jpeg_end(data: bytes) -> int | None:
    """Offset just past the primary image's end-of-image marker, or None when the data stops before it.

    Walks the marker segments by their lengths (an EXIF thumbnail's own EOI inside APP1 is skipped) and each scan's
    entropy-coded data (where 0xFF is followed by 0x00 stuffing or a restart marker), so bytes after the image
    (a motion photo's video, padding) are not mistaken for its end, nor is their absence required."""
    offset = 2
    while offset + 2 <= len(data):
        if data[offset] != 0xFF:  # stray bytes between segments: decoders skip to the next marker, and so do we
            offset = data.find(b"\xff", offset)
            if offset < 0:
                return None
            continue
        marker = data[offset + 1]
        if marker == 0xD9:
            return offset + 2
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            offset += 2
            continue
        if offset + 4 > len(data):
            return None
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        offset += 2 + length
        if marker == 0xDA:  # start of scan: skip the entropy-coded data up to the next real marker
            offset = _scan_end(data, offset)
    return None


def _scan_end(data: bytes, offset: int) -> int:
    """Offset of the first marker after entropy-coded data starting at `offset` (len(data) when none)."""
    while True:
        offset = data.find(b"\xff", offset)
        if offset < 0 or offset + 1 >= len(data):
            return len(data)
        following = data[offset + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            offset += 1 if following == 0xFF else 2
            continue
        return offset


def _png_end(data: bytes) -> int | None:
    """Offset just past the IEND chunk, walking the chunks by their lengths; None when the data stops before it."""
    offset = 8
    while offset + 12 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        offset += 12 + length
        if kind == b"IEND":
            return offset if offset <= len(data) else None
    return None


def _check_complete(data: bytes, kind: str) -> None:
    """Raise DecodeError when the image stops before its end marker. Data after the end (a motion photo's video,
    an appended trailer) is accepted: decoders stop at the end marker."""
    if kind == "jpeg" and _jpeg_end(data) is None:
        raise DecodeError("truncated JPEG: no end-of-image marker")
    if kind == "png" and _png_end(data) is None:
        raise DecodeError("truncated PNG: no IEND chunk")


def pixel_limit(kind: str, max_pixels: int) -> int:
    """The decompression-bomb guard for a format: `max_pixels` for JPEG (decoded at reduced scale when large),
    `PNG_PIXEL_SHARE` of it for PNG (always decoded whole)."""
    return int(max_pixels * PNG_PIXEL_SHARE) if kind == "png" else max_pixels


def decode_image(data: bytes, target: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes -> upright RGB uint8 array (reduced scale when `target` allows). Raises DecodeError with a reason."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    kind = sniff_format(data)
    if kind is None:
        raise DecodeError(f"not a JPEG or PNG image: {describe_bytes(data)}")
    size = image_size(data)
    if size is None:
        raise DecodeError(f"corrupt {kind.upper()} header")
    width, height = size
    limit = pixel_limit(kind, max_pixels)
    if width * height > limit:
        raise DecodeError(f"image too large: {width}x{height} exceeds the {limit} pixel limit for {kind.upper()}")
    _check_complete(data, kind)
    factor = reduction_factor(width, height, target) if (target and kind == "jpeg") else 1
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED_FLAGS[factor])
    if bgr is None:
        raise DecodeError(f"corrupt {kind.upper()}: OpenCV could not decode it")
    if min(bgr.shape[:2]) * factor < MIN_SIDE:
        raise DecodeError(f"image too small: {width}x{height} (minimum side {MIN_SIDE} px)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


ANALYSIS_SIDE = 512  # quality metrics and display search run on a gray copy at most this large


def analysis_gray(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """(gray image with long side <= ANALYSIS_SIDE, its scale relative to `rgb`): computed once per photo."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    scale = ANALYSIS_SIDE / max(gray.shape)
    if scale < 1:
        return cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale
    return gray, 1.0


def quality_metrics(rgb: np.ndarray, gray: np.ndarray | None = None) -> tuple[float, float]:
    """(blur, brightness): variance of the Laplacian at 512 px (higher = sharper), mean gray level in [0, 1].
    `gray`: the photo's `analysis_gray`, when already computed."""
    gray = analysis_gray(rgb)[0] if gray is None else gray
    blur = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    return blur, float(gray.mean() / 255.0)


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize to `size` x `size` like the Hugging Face processors do (no letterbox), area filter when shrinking."""
    shrinking = rgb.shape[0] > size or rgb.shape[1] > size
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def fold_into_square(rgb: np.ndarray, size: int, rows: int = 1) -> np.ndarray:
    """Resize to (`size` * `rows`) x (`size` / `rows`) and stack the `rows` slices top to bottom into a `size` square.

    `rows=1` is `resize_square`. Requires `size % rows == 0`."""
    if rows == 1:
        return resize_square(rgb, size)
    if size % rows:
        raise ValueError(f"input size {size} is not divisible by {rows} rows")
    strip = cv2.resize(rgb, (size * rows, size // rows), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.vstack([strip[:, i * size : (i + 1) * size] for i in range(rows)]))


CLAHE_CLIP_LIMIT = 2.0  # OpenCV's contrast limit per tile: a faint register stretched, noise not blown up
CLAHE_COLUMNS = 4  # tiles across each folded row: about two digits of an 8-digit register per tile


def equalize_lightness(rgb: np.ndarray, rows: int = 1) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (CLAHE) of the LAB lightness, `CLAHE_COLUMNS` tiles across
    each of the `rows` folded rows; hue and saturation kept (RGB uint8 in and out). Grey-on-grey wheels come out
    as a dark-on-light register does; a global stretch cannot, since paper, housing and glare share the image."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=(CLAHE_COLUMNS, rows))
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def upright_size(header: tuple[int, int], decoded_shape: tuple[int, ...]) -> tuple[int, int]:
    """Full-resolution (width, height) after orientation: the header size, swapped if decoding rotated it."""
    width, height = header
    decoded_portrait = decoded_shape[0] > decoded_shape[1]
    return (min(header), max(header)) if decoded_portrait and width > height else (width, height)


def decode_target(size: int, layout: InputLayout) -> int:
    """Pixels the model needs across the image: `size` per folded row, doubled when the display is cropped out of
    the photo first (it spans about half the photo). Reduced decoding keeps the short side at twice this."""
    return size * layout.rows * (2 if layout.crop_display else 1)


def preprocess_photo(
    data: bytes, size: int, max_pixels: int = DEFAULT_MAX_PIXELS, layout: InputLayout = InputLayout()
) -> Preprocessed:
    """Bytes -> Preprocessed for a model with a `size` px square input, shaped by the model's `layout`.
    Raises DecodeError.

    With `layout.crop_display`, the register display is located and rectified first (the whole photo is used when
    no display is found); models trained on crops say so in their `meterread.json`. With `layout.local_contrast`
    the folded square's lightness is equalised locally last."""
    rgb = decode_image(data, target=decode_target(size, layout), max_pixels=max_pixels)
    width, height = upright_size(image_size(data) or (rgb.shape[1], rgb.shape[0]), rgb.shape)
    gray, scale = analysis_gray(rgb)
    blur, brightness = quality_metrics(rgb, gray)
    if layout.crop_display:
        found = find_display(rgb, (gray, scale))
        rgb = crop_display_region(rgb, found) if found else rgb
    image = fold_into_square(rgb, size, layout.rows)
    if layout.local_contrast:
        image = equalize_lightness(image, layout.rows)
    return Preprocessed(image, width=width, height=height, blur=blur, brightness=brightness)


@dataclass(frozen=True)
class DisplayCrop:
    """Where the register display was found: corner points (x, y) in the upright photo, and the score."""

    corners: tuple[tuple[float, float], ...]
    score: float


def _rectangle_candidates(gray: np.ndarray) -> list[np.ndarray]:
    """Rotated rectangles (cv2.boxPoints order) of closed contours that could be a display window."""
    edges = cv2.Canny(cv2.GaussianBlur(gray, (5, 5), 0), 40, 120)
    edges = cv2.dilate(edges, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    image_area = gray.shape[0] * gray.shape[1]
    boxes = []
    for contour in contours:
        (cx, cy), (w, h), angle = cv2.minAreaRect(contour)
        long_side, short_side = max(w, h), min(w, h)
        if short_side < 8 or not 0.02 <= (w * h) / image_area <= 0.6 or not 1.8 <= long_side / short_side <= 8:
            continue
        if cv2.contourArea(cv2.convexHull(contour)) < 0.8 * w * h:
            continue
        box = cv2.boxPoints(((cx, cy), (w, h), angle))
        if _is_landscape(box):  # a register lies across the photo; an upright box is one wheel or digit
            boxes.append(box)
    return boxes


def _is_landscape(box: np.ndarray) -> bool:
    """Whether a rotated rectangle's long side runs within 45 degrees of horizontal."""
    first, second = box[1] - box[0], box[2] - box[1]
    long_side = first if np.linalg.norm(first) >= np.linalg.norm(second) else second
    return abs(float(long_side[0])) >= abs(float(long_side[1]))


def _order_corners(points: np.ndarray) -> np.ndarray:
    """Top-left, top-right, bottom-right, bottom-left for a landscape rectangle."""
    center = points.mean(axis=0)
    angles = np.arctan2(points[:, 1] - center[1], points[:, 0] - center[0])
    ordered = points[np.argsort(angles)]  # starts at the top-left-ish corner (angle near -135 degrees)
    start = int(np.argmin(ordered.sum(axis=1)))
    ordered = np.roll(ordered, -start, axis=0)
    if np.linalg.norm(ordered[1] - ordered[0]) < np.linalg.norm(ordered[3] - ordered[0]):
        ordered = ordered[[1, 2, 3, 0]]  # portrait order: rotate so the long side is on top
    return ordered.astype(np.float32)


def find_display(rgb: np.ndarray, analysed: tuple[np.ndarray, float] | None = None) -> DisplayCrop | None:
    """Locate the register display: the wide rectangle with the most inner edge detail, grown over neighbouring
    digits (`_extend_along_digits`). None if nothing fits. `analysed`: the photo's `analysis_gray`, when already
    computed."""
    small, scale = analysed if analysed is not None else analysis_gray(rgb)
    edges = cv2.Canny(small, 60, 160)
    scored = []
    for box in _rectangle_candidates(small):
        mask = np.zeros_like(small)
        cv2.fillConvexPoly(mask, box.astype(np.int32), 255)
        inside = cv2.erode(mask, np.ones((5, 5), np.uint8)) > 0
        if inside.any():
            scored.append((box, float(edges[inside].mean() / 255.0), float(inside.sum())))
    if not scored or max(detail for _, detail, _ in scored) < 0.02:
        return None
    # The display is detailed (digits): among candidates at least half as detailed as the most detailed one,
    # take the largest, so a whole counter window wins over the part of it with the densest edges.
    top = max(detail for _, detail, _ in scored)
    box, detail, _ = max((c for c in scored if c[1] >= 0.5 * top), key=lambda c: c[2])
    corners = _extend_along_digits(edges, _order_corners(box)) / scale
    return DisplayCrop(tuple((float(x), float(y)) for x, y in corners), detail)


def _band_density(edges: np.ndarray, corners: np.ndarray, reach: float) -> np.ndarray:
    """Edge density per column of the band a landscape box (TL, TR, BR, BL) sits in, stretched `reach` x its width
    to each side and rectified (one column per pixel of the box's width; inner rows only, not the frame lines)."""
    top, bottom = corners[1] - corners[0], corners[2] - corners[3]
    width = float(np.linalg.norm(top))
    height = float(np.linalg.norm(corners[3] - corners[0]))
    columns = int(round(width * (1 + 2 * reach)))
    source = np.float32(
        [corners[0] - reach * top, corners[1] + reach * top, corners[2] + reach * bottom, corners[3] - reach * bottom]
    )
    target = np.float32([[0, 0], [columns, 0], [columns, height], [0, height]])
    band = cv2.warpPerspective(edges, cv2.getPerspectiveTransform(source, target), (columns, max(int(height), 1)))
    rows = band.shape[0]
    return band[rows // 6 : rows - rows // 6].mean(axis=0) / 255.0


def _extend_along_digits(edges: np.ndarray, corners: np.ndarray, reach: float = 1.0) -> np.ndarray:
    """Grow a landscape box (TL, TR, BR, BL) sideways, a digit's width at a time, while the band beside it keeps
    the edge density of digits; looks up to `reach` x the box's width each way.

    A counter's black integer wheels and red decimal wheels are often separate rectangles to the contour search."""
    top, bottom = corners[1] - corners[0], corners[2] - corners[3]
    width = float(np.linalg.norm(top))
    height = float(np.linalg.norm(corners[3] - corners[0]))
    if width < 8 or height < 4:
        return corners
    density = _band_density(edges, corners, reach)
    inner = int(round(reach * width)), int(round((1 + reach) * width))
    step = max(2, int(height * 0.5))  # about a digit's width
    floor = 0.35 * float(density[inner[0] : inner[1]].mean())

    def digit_like(span: np.ndarray) -> bool:  # a lone frame line is one dense column: use the median
        return len(span) == step and float(np.median(span)) >= floor

    right = inner[1]
    while digit_like(density[right : right + step]):
        right += step
    left = inner[0]
    while left >= step and digit_like(density[left - step : left]):
        left -= step
    grow_left, grow_right = (inner[0] - left) / width, (right - inner[1]) / width
    return np.float32(
        [
            corners[0] - grow_left * top,
            corners[1] + grow_right * top,
            corners[2] + grow_right * bottom,
            corners[3] - grow_left * bottom,
        ]
    )


def crop_display_region(rgb: np.ndarray, crop: DisplayCrop, margin: float = 0.06) -> np.ndarray:
    """Perspective-rectify the display region (with a small margin) into an upright landscape image."""
    corners = np.array(crop.corners, np.float32)
    width = float(np.linalg.norm(corners[1] - corners[0]))
    height = float(np.linalg.norm(corners[3] - corners[0]))
    center = corners.mean(axis=0)
    grown = center + (corners - center) * (1 + 2 * margin)
    target = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    warp = cv2.getPerspectiveTransform(grown, target)
    return cv2.warpPerspective(
        rgb, warp, (max(int(width), 1), max(int(height), 1)), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
