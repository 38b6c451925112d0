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
from meterread.display import analysis_gray, crop_display_region, find_display

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
CLAHE_COLUMNS = 4  # tiles across each folded row: about one digit per tile of an 8-digit register in two rows


def equalize_lightness(rgb: np.ndarray, rows: int = 1) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (CLAHE) of the LAB lightness, `CLAHE_COLUMNS` tiles across
    each of the `rows` folded rows; hue and saturation kept (RGB uint8 in and out). Faint grey-on-grey wheels
    come out with the contrast of a plain register; a global stretch cannot do it, since paper, housing and glare
    share the image."""
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
