"""The pretrained-features measurement script (scripts/ceiling_ppocr.py): its class layout and input scaling.

Converting the network needs the `research` extra (onnx2torch), which `make install` leaves out; the script checks
its conversion against onnxruntime itself on every start (`check_conversion`)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def ppocr():
    sys.path.insert(0, str(SCRIPTS))  # it reuses ceiling_crnn's loading and report
    try:
        spec = importlib.util.spec_from_file_location("ceiling_ppocr", SCRIPTS / "ceiling_ppocr.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    return module


def test_digit_rows_put_blank_first_then_each_character_one_past_its_dictionary_index(ppocr):
    characters = list("ab0123456789.c")
    assert ppocr.digit_rows(characters) == [0, *range(3, 14)]
    with pytest.raises(ValueError):
        ppocr.digit_rows(list("abc"))  # a dictionary without digits cannot give their rows


def test_the_recogniser_ships_in_the_baseline_wheel(ppocr):
    assert ppocr.MODEL.is_file() and ppocr.MODEL.stat().st_size > 1_000_000


def test_inputs_are_scaled_as_rapidocr_scales_them_and_augmentation_stays_in_range(ppocr):
    images = np.zeros((2, 48, 192, 3), np.uint8)
    images[0, ..., 0] = 255  # blue in OpenCV's BGR: rapidocr feeds BGR as it is
    x = ppocr.to_input(images)
    assert x.shape == (2, 3, 48, 192)
    assert torch.all(x[0, 0] == 1) and torch.all(x[0, 1:] == -1) and torch.all(x[1] == -1)
    augmented = ppocr.to_input(images, np.random.default_rng(0))
    assert augmented.min() >= -1 and augmented.max() <= 1 and not torch.equal(augmented, x)


def test_the_torchvision_stand_in_imports_like_onnx2torch_needs_and_fails_if_called(ppocr, monkeypatch):
    for name in ("torchvision", "torchvision.ops"):  # recorded as absent, so the stand-ins are removed afterwards
        monkeypatch.setitem(sys.modules, name, None)
    ppocr.stub_torchvision()
    from torchvision.ops import roi_align

    with pytest.raises(NotImplementedError, match="torchvision is not installed"):
        roi_align()
    with pytest.raises(NotImplementedError):
        sys.modules["torchvision"].ops.nms()
