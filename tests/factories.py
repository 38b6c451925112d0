"""Test data drawn with OpenCV (no committed binaries)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace

import cv2
import numpy as np

from meterread.config import ModelSpec
from meterread.data.synth import render_meter
from meterread.models.base import Prediction
from meterread.preprocess import InputLayout


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


@dataclass
class ScriptedReader:
    """A Reader that answers the given texts in order, with full confidence (no model: pipeline tests). Copies
    made by `with_pattern` share its texts and `patterns_read`, the reading pattern each image was read with."""

    texts: Iterable[str]
    spec: ModelSpec = field(default_factory=lambda: ModelSpec(family="paligemma", base="fake"))
    patterns_read: list = field(default_factory=list)
    family, image_size, model_id, adapter_id, fingerprint = "fake", 64, "fake", None, "fake-1"
    default_prompt, layout, min_confidence = "read", InputLayout(), None
    device = SimpleNamespace(type="cpu")

    def __post_init__(self):
        self.texts = iter(self.texts)

    def read(self, images, prompts):
        self.patterns_read.extend([self.spec.pattern] * len(images))
        return [Prediction(next(self.texts), (0.0,)) for _ in images]

    def classify(self, images, prompt, labels):
        return [(labels[0], 1.0) for _ in images]


def failing_once(real, error: Exception):
    """`real`, except that its first call raises `error`; `.calls` holds each call's first argument."""
    calls: list = []

    def wrapper(first, *args, **kwargs):
        calls.append(first)
        if len(calls) == 1:
            raise error
        return real(first, *args, **kwargs)

    wrapper.calls = calls
    return wrapper
