"""The ceiling measurement script (scripts/ceiling_crnn.py): decoding, loading and shapes it relies on."""

import json

import cv2
import numpy as np
import pytest
import torch

from tests.scripts.conftest import load_script


@pytest.fixture(scope="module")
def crnn():
    return load_script("ceiling_crnn")


def one_hot_path(crnn, classes: list[int]) -> torch.Tensor:
    logits = torch.full((1, len(classes), len(crnn.CHARSET) + 1), -5.0)
    for t, k in enumerate(classes):
        logits[0, t, k] = 5.0
    return logits


def test_greedy_decode_collapses_repeats_and_drops_blanks(crnn):
    one, dot, five = 2, 11, 6  # class = CHARSET index + 1; 0 is blank
    path = [0, one, one, 0, one, dot, dot, 0, five, five]
    assert crnn.greedy_decode(one_hot_path(crnn, path)) == ["11.5"]


def test_load_split_keeps_aspect_and_fills_the_width(crnn, tmp_path):
    folder = tmp_path / "test"
    folder.mkdir()
    strip = np.zeros((24, 48, 3), np.uint8)
    strip[:, -4:] = 200  # a bright right edge, repeated into the padding
    cv2.imwrite(str(folder / "a.png"), strip)
    row = {"image": "a.png", "suffix": "12.3", "meter_model": "lcd/x"}
    (folder / "annotations.jsonl").write_text(json.dumps(row) + "\n")
    images, readings, models = crnn.load_split(folder)
    assert images.shape == (1, crnn.HEIGHT, crnn.WIDTH, 3)
    assert readings == ["12.3"] and models == ["lcd/x"]
    assert images[0, :, :80].mean() < 60  # 48 px wide at 24 high -> 96 px wide at 48 high, dark but the edge
    assert images[0, :, 100:].min() > 150  # padding repeats the bright right edge


def test_crnn_reads_one_column_per_four_pixels(crnn):
    x = crnn.to_tensor(np.zeros((2, crnn.HEIGHT, crnn.WIDTH, 3), np.uint8), np.random.default_rng(0), heavy=True)
    assert crnn.CRNN()(x).shape == (2, crnn.WIDTH // 4, len(crnn.CHARSET) + 1)


def test_ctc_loss_is_finite_and_falls_when_fitting_two_strips(crnn):
    torch.manual_seed(0)
    images = np.random.default_rng(1).integers(0, 255, (2, crnn.HEIGHT, crnn.WIDTH, 3), dtype=np.uint8)
    readings = ["1234.5", "98"]
    net = crnn.CRNN()
    optimizer = torch.optim.Adam(net.parameters(), 3e-3)
    first = crnn.ctc_loss(net, images, readings)
    for _ in range(30):
        loss = crnn.ctc_loss(net, images, readings)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(first) and loss.item() < 0.5 * first.item()


def test_read_all_leaves_the_net_training(crnn):
    net = crnn.CRNN()
    texts = crnn.read_all(net, np.zeros((3, crnn.HEIGHT, crnn.WIDTH, 3), np.uint8))
    assert len(texts) == 3 and net.training
