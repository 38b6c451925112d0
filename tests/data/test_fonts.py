"""Font makes: deterministic, labelled like the real crop set, each crop showing the digit its name says."""

import numpy as np
import pytest

from meterread.data.crops import index_crops, is_lcd
from meterread.data.fonts import (
    BUNDLED_FONT,
    HERSHEY_FONTS,
    FontMake,
    _shift,
    _wheel_window,
    font_files,
    plan_makes,
    render_crop,
    write_font_makes,
)


def make(glyphs: str, **changes) -> FontMake:
    values = dict(name="font/counter-00", glyphs=glyphs, ink=(20, 20, 20), paper=(230, 230, 230), height=48,
                  aspect=0.65, scale=0.75, stroke=6, style_seed=3)  # fmt: skip
    return FontMake(**{**values, **changes})


def test_makes_are_planned_deterministically_with_a_third_lcds():
    makes = plan_makes(24, [], seed=4)
    assert makes == plan_makes(24, [], seed=4) and makes != plan_makes(24, [], seed=5)
    assert [m.is_lcd for m in makes] == [False] * 16 + [True] * 8
    assert all(is_lcd(m.name) == m.is_lcd for m in makes)  # strips draw LCD makes as LCD panels
    counters = {m.glyphs for m in makes if not m.is_lcd}
    assert counters <= {BUNDLED_FONT, *HERSHEY_FONTS} and len(counters) == 6  # no fonts found: all six sources


def test_font_files_keep_only_fonts_that_draw_ten_digits(tmp_path):
    (tmp_path / "broken.ttf").write_bytes(b"not a font")
    assert font_files((str(tmp_path),)) == []
    real = font_files()
    assert real == sorted(real)


def best_match(image: np.ndarray, template: np.ndarray) -> float:
    """Correlation of `image` with `template`, at the best of the +-2 px shifts a crop may have."""
    shifts = [np.roll(template, (dy, dx), axis=(0, 1)) for dy in range(-2, 3) for dx in range(-2, 3)]
    return max(np.corrcoef(image.ravel(), shifted.ravel())[0, 1] for shifted in shifts)


@pytest.mark.parametrize("glyphs", ["hershey-duplex", BUNDLED_FONT])
def test_each_wheel_window_shows_the_digit_it_is_labelled_with(glyphs):
    """Against every other digit's window, the crop of (d, tenths) correlates best with its own: labels match."""
    font_make = make(glyphs)
    rng = np.random.default_rng(0)
    for digit in range(10):
        for tenths in (0, 3, 5):
            gray = render_crop(font_make, digit, tenths, rng).mean(-1)
            ink = -gray  # dark ink on light paper
            scores = [best_match(ink, _wheel_window(font_make, d, tenths, gray.shape[1])) for d in range(10)]
            assert int(np.argmax(scores)) == digit, (digit, tenths, np.round(scores, 2))


@pytest.mark.parametrize("tenths", [1, 3, 5, 9])
def test_a_rolled_wheel_moves_up_by_its_tenths_bringing_the_next_digit_from_below(tenths):
    """`d.t` (the crop set's label): digit d's window moved up t tenths of its height, d+1 entering at the bottom."""
    font_make = make("hershey-simplex")
    height, width = font_make.height, 30
    offset = round(tenths / 10 * height)
    rolled = _wheel_window(font_make, 9, tenths, width)
    np.testing.assert_array_equal(rolled[: height - offset], _wheel_window(font_make, 9, 0, width)[offset:])
    np.testing.assert_array_equal(rolled[height - offset :], _wheel_window(font_make, 0, 0, width)[:offset])


def test_a_loose_cut_repeats_the_edge_instead_of_wrapping_ink_round():
    image = np.zeros((6, 6, 3), np.float32)
    image[:, -1] = 255  # ink on the right edge only
    assert _shift(image, 0, 2).max() == 0  # moved out, not round to the left edge (np.roll would put it there)
    assert _shift(image, 0, -2)[:, -3:].min() == 255  # moved in: the edge column repeats into the gap


def test_written_makes_are_deterministic_and_read_as_a_crop_set(tmp_path):
    makes = plan_makes(3, [], seed=1, lcd_share=1 / 3)
    assert write_font_makes(tmp_path / "a", makes, 40, seed=2) == {m.name: 40 for m in makes}
    write_font_makes(tmp_path / "b", makes, 40, seed=2)
    for path in (tmp_path / "a").rglob("*.jpg"):
        assert (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes() == path.read_bytes()
    grouped = index_crops(tmp_path / "a")
    assert sorted(grouped) == sorted(m.name for m in makes)
    for m in makes:
        tenths = [crop.tenths for crop in grouped[m.name]]
        assert (max(tenths) == 0) == m.is_lcd  # LCDs never roll; counters do, as the real crop set's do
        assert {crop.digit for crop in grouped[m.name]} == set(range(10))
