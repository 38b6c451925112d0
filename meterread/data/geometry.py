"""Quadrilateral overlap, for measuring how well the display crop holds a register. Pure."""

from __future__ import annotations

import cv2
import numpy as np

from meterread.display import find_display

HOLDS = 0.95  # share of the register window the display crop must hold


def quad_overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(intersection area, area of a, area of b) of two convex quads (4x2 points)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    inter, _ = cv2.intersectConvexConvex(cv2.convexHull(a), cv2.convexHull(b))
    return float(inter), float(cv2.contourArea(a)), float(cv2.contourArea(b))


def quad_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter, area_a, area_b = quad_overlap(a, b)
    return inter / (area_a + area_b - inter)


def window_recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true register window inside the found quad."""
    inter, _, truth_area = quad_overlap(found, truth)
    return inter / truth_area


def display_holds_register(photo_bgr: np.ndarray, window: np.ndarray, share: float = HOLDS) -> bool:
    """Whether the display search on a photo (BGR, as the generators render it) finds a box holding at least
    `share` of the register `window` (4x2 corners in the photo); nothing found holds nothing."""
    found = find_display(cv2.cvtColor(photo_bgr, cv2.COLOR_BGR2RGB))
    return found is not None and window_recall(np.array(found.corners, np.float32), window) >= share
