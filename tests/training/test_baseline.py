"""The PP-OCRv4 peer baseline (rapidocr-onnxruntime, installed by `make install`)."""

import cv2
import numpy as np
import pytest

from meterread.preprocess import InputLayout
from meterread.training.baseline import baseline_text, load_baseline, register_image


@pytest.mark.parametrize(
    ("raw", "label", "text"),
    [
        ("8S83553", "8583553", "883553"),  # letters are dropped, never guessed into digits
        ("123456", "12345.6", "12345.6"),  # a counter's red decimal wheel: the label's decimal places
        ("1234.56", "12345.6", "1234.56"),  # a separator it read is kept
        ("", "12.5", ""),
        ("12", "12.345", "12"),
    ],
)
def test_baseline_text(raw, label, text):
    assert baseline_text(raw, label) == text


def test_ppocr_reads_a_printed_number():
    image = np.full((48, 260, 3), 255, np.uint8)
    cv2.putText(image, "4071562", (8, 38), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (0, 0, 0), 3, cv2.LINE_AA)
    text, score = load_baseline("ppocr").read(image)
    assert text == "4071562" and 0.5 < score <= 1.0


def test_unknown_baseline_is_refused():
    with pytest.raises(ValueError, match="unknown baseline"):
        load_baseline("tesseract")


def test_register_image_is_the_display_crop_for_a_cropping_layout():
    from tests.factories import meter_jpeg

    data = meter_jpeg("01234.5", size=(640, 480))
    whole = register_image(data, InputLayout())
    crop = register_image(data, InputLayout(crop_display=True))
    assert whole.shape[:2] == (480, 640) and crop.shape[0] < 240 and crop.shape[1] > crop.shape[0]
