"""The pretrained-features measurement script (scripts/ceiling_ppocr.py): its input scaling and its network (the
product's import of PP-OCRv4, tested in tests/models/test_ppocr.py)."""

import numpy as np
import pytest
import torch

from tests.scripts.conftest import load_script


@pytest.fixture(scope="module")
def ppocr():
    return load_script("ceiling_ppocr")  # it imports ceiling_crnn's loading and report


def test_inputs_are_scaled_as_rapidocr_scales_them_and_augmentation_stays_in_range(ppocr):
    images = np.zeros((2, 48, 192, 3), np.uint8)
    images[0, ..., 0] = 255  # blue in OpenCV's BGR: rapidocr feeds BGR as it is
    x = ppocr.to_input(images)
    assert x.shape == (2, 3, 48, 192)
    assert torch.all(x[0, 0] == 1) and torch.all(x[0, 1:] == -1) and torch.all(x[1] == -1)
    augmented = ppocr.to_input(images, np.random.default_rng(0))
    assert augmented.min() >= -1 and augmented.max() <= 1 and not torch.equal(augmented, x)


def test_the_network_is_the_published_recogniser_restricted_to_digits(ppocr):
    net = ppocr.PretrainedReader()
    logits = net(torch.zeros(1, 3, 48, 192))
    assert logits.shape == (1, 24, 12)  # W / 8 columns of blank + 0-9 + "."
