"""Register rendering from real crops: the recolouring palette."""

import cv2
import numpy as np

from meterread.data.crops import index_crops
from meterread.data.registers import MIN_PALETTE_CONTRAST, random_palette, recolour_cells, render_register

LUMA = np.float32([0.114, 0.587, 0.299])  # BGR


def test_palettes_keep_their_contrast_and_come_in_both_polarities():
    rng = np.random.default_rng(3)
    palettes = [random_palette(rng) for _ in range(200)]
    gaps = [float((shadow - highlight) @ LUMA) for shadow, highlight in palettes]
    assert all(abs(gap) >= MIN_PALETTE_CONTRAST for gap in gaps)
    assert any(gap > 0 for gap in gaps) and any(gap < 0 for gap in gaps)  # light-on-dark and dark-on-light


def test_recoloured_crops_keep_their_shape_and_their_strokes():
    crop = np.full((40, 24, 3), 230, np.uint8)
    crop[6:34, 8:16] = 20  # a two-level crop: a "1" in ink on paper
    rng = np.random.default_rng(4)
    for _ in range(20):
        (painted,) = recolour_cells([crop], *random_palette(rng))
        assert painted.shape == crop.shape and painted.dtype == np.uint8
        ink, paper = crop[..., 0] < 128, crop[..., 0] >= 128
        gray = cv2.cvtColor(painted, cv2.COLOR_BGR2GRAY).astype(float)
        assert abs(gray[ink].mean() - gray[paper].mean()) >= MIN_PALETTE_CONTRAST - 5  # the digit still shows
        assert gray[ink].std() < 15 and gray[paper].std() < 15  # one colour each: a palette, not noise


def test_a_recoloured_lcd_draws_its_decimal_point_in_the_segments_colour(digits_root):
    """The point takes the palette's shadow (what the dark segments became), whichever polarity the palette has:
    never the panel's colour, where a label with a point would show none."""
    picks = index_crops(digits_root)["lcd/lcd2"][:5]
    for seed in range(12):
        with_point, without = (
            render_register(picks, decimals, np.random.default_rng(seed), cell_h=60, recolour=1.0)
            for decimals in (1, 0)
        )
        replay = np.random.default_rng(seed)
        replay.random()  # render_register's draw of whether to recolour
        shadow, _ = random_palette(replay)
        change = np.abs(with_point.astype(int) - without.astype(int)).sum(axis=2)
        core = with_point[np.unravel_index(change.argmax(), change.shape)]  # the point's most changed pixel
        assert change.max() > 0 and np.abs(core.astype(float) - shadow).max() <= 3, (seed, core, shadow)
