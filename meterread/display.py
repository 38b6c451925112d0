"""Where the register display is in a photo, and its rectified crop, with OpenCV. Pure (arrays in and out).

`find_display` looks for a wide closed rectangle with the most edge detail inside (a counter window, an LCD) on a
small gray copy of the photo (`analysis_gray`), then grows it sideways over neighbouring digits; `crop_display_region`
rectifies it into an upright landscape image. `meterread.preprocess` calls both when a model's layout crops the
display (and the PP-OCRv4 baseline, `training.baseline`, for the same region).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

ANALYSIS_SIDE = 512  # quality metrics and display search run on a gray copy at most this large
WINDOW_AREA = (0.01, 0.6)  # a display window's share of the photo's area (a round water face's register: ~1-2%)
WINDOW_ASPECT = (1.8, 8.0)  # its long side over its short side
WINDOW_FILL = 0.85  # share of its rotated box its convex hull fills (a window ~0.9-1; a row of round dials ~0.82)


def analysis_gray(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """(gray image with long side <= ANALYSIS_SIDE, its scale relative to `rgb`): computed once per photo."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    scale = ANALYSIS_SIDE / max(gray.shape)
    if scale < 1:
        return cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale
    return gray, 1.0


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
        area, aspect = (w * h) / image_area, long_side / max(short_side, 1e-6)
        if (
            short_side < 8
            or not WINDOW_AREA[0] <= area <= WINDOW_AREA[1]
            or not WINDOW_ASPECT[0] <= aspect <= WINDOW_ASPECT[1]
        ):
            continue
        if cv2.contourArea(cv2.convexHull(contour)) < WINDOW_FILL * w * h:
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
