"""The display search (meterread.display): growing a found box over the digits beside it. Whole photos are
searched in tests/data (synthetic and real-crop photos: how often the crop holds the whole register)."""

import cv2
import numpy as np
import pytest

from meterread.display import _extend_along_digits


def test_display_box_grows_over_neighbouring_digits_and_stops_at_flat_housing():
    """Edges of a 300 px row of 'digits' (outlined 14 x 20 px, 4 px apart); the found box covers only its left half,
    and a lone frame line stands 20 px beyond its right end: the box grows to the digits' end, not over the line."""
    edges = np.zeros((120, 600), np.uint8)
    for x in range(100, 400, 18):
        cv2.rectangle(edges, (x, 50), (x + 13, 70), 255, 1)
    edges[30:90, 420] = 255  # a frame line, one column wide
    box = np.float32([[100, 40], [250, 40], [250, 80], [100, 80]])
    grown = _extend_along_digits(edges, box)
    assert grown[0][0] == pytest.approx(100, abs=20)  # nothing to the left
    assert 380 <= grown[1][0] <= 415 and grown[2][0] == pytest.approx(grown[1][0])  # right edge, no frame line
    assert np.allclose(grown[:, 1], box[:, 1])  # height unchanged
