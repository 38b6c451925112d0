"""Test data drawn with OpenCV (no committed binaries)."""

from __future__ import annotations

import cv2
import numpy as np

from meterread.data.synth import render_meter


def meter_jpeg(label: str = "01234.5", seed: int = 0, size: tuple[int, int] = (320, 240)) -> bytes:
    photo = render_meter(label, np.random.default_rng(seed), size)
    return cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def png_bytes(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


BAD_FILES = {
    "zero-byte": (b"", "empty file"),
    "text-as-jpg": (b"this is not a photo, just some text\n", "not a JPEG or PNG image"),
    "corrupt": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9", "corrupt"),
}
