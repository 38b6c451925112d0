"""Peer baseline for `meterread eval --baseline ppocr`: PP-OCRv4 through `rapidocr-onnxruntime` (Apache-2.0, its
ONNX weights ship inside the wheel; the optional `baseline` extra), recognition only (`use_det=False`: with its own
text detection it reads under 1% of our sets).

It reads the same photos as the model, at full resolution: the display region our OpenCV crop finds (for a model
whose layout crops the display; the whole image otherwise). Its text is cut to digits; a counter's decimal point is
a red wheel, not a character, so where its text has no separator the label's decimal places are applied, as a
meters table would in production. Both are in the baseline's favour."""

from __future__ import annotations

import numpy as np

from meterread.config import DEFAULT_MAX_PIXELS
from meterread.display import crop_display_region, find_display
from meterread.preprocess import InputLayout, decode_image

BASELINES = ("ppocr",)
INSTALL_HINT = "pip install rapidocr-onnxruntime==1.4.4 --no-deps onnxruntime pyclipper shapely six (make install does)"


def register_image(data: bytes, layout: InputLayout, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The photo (RGB, upright), or its rectified display region when `layout` crops the display."""
    rgb = decode_image(data, max_pixels=max_pixels)
    if not layout.crop_display:
        return rgb
    found = find_display(rgb)
    return crop_display_region(rgb, found) if found else rgb


def baseline_text(raw: str, label: str) -> str:
    """An OCR line as a reading: digits and separators only; with no separator, the label's decimal places."""
    kept = "".join(c for c in raw if c.isdigit() or c in ".,")
    decimals = len(label.split(".")[1]) if "." in label else 0
    if not decimals or any(c in kept for c in ".,") or len(kept) <= decimals:
        return kept
    return f"{kept[:-decimals]}.{kept[-decimals:]}"


class PPOCR:
    """PP-OCRv4 recognition on one text line; `read` returns (raw text, score)."""

    name = "ppocr"

    def __init__(self) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as error:
            raise RuntimeError(f"the ppocr baseline needs rapidocr-onnxruntime: {INSTALL_HINT}") from error
        self.engine = RapidOCR()

    def read(self, rgb: np.ndarray) -> tuple[str, float]:
        result, _ = self.engine(np.ascontiguousarray(rgb[..., ::-1]), use_det=False, use_cls=False, use_rec=True)
        if not result:
            return "", 0.0
        text, score = result[0]
        return str(text), float(score)


def load_baseline(name: str) -> PPOCR:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
    return PPOCR()
