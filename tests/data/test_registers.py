"""Register rendering from real crops: the recolouring palette, loosened LCD crops, restyled strokes and slant, red
wheels only where decimals are."""

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from meterread.data.crops import DigitCrop, index_crops
from meterread.data.registers import (
    LOOSE_SLICE,
    MIN_PALETTE_CONTRAST,
    RESTYLE_SLANT,
    is_red_wheel,
    loosen_cells,
    mark_red_wheels,
    pick_crops,
    random_palette,
    recolour_cells,
    render_register,
    restyle_cells,
)

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


def test_loosened_cells_show_their_own_crop_between_slices_of_their_neighbours():
    crops = [np.full((40, 20, 3), value, np.uint8) for value in (10, 120, 240)]  # one grey level per crop
    sides = set()
    for seed in range(20):
        for index, cell in enumerate(loosen_cells(crops, np.random.default_rng(seed))):
            assert cell.shape[0] == 40 and cell.dtype == np.uint8
            own = cell[0, :, 0] == crops[index][0, 0, 0]
            assert own.sum() == 20 and np.all(np.diff(np.flatnonzero(own)) == 1)  # the whole crop, in one piece
            left, right = cell[0, : own.argmax(), 0], cell[0, own.argmax() + 20 :, 0]
            assert np.all(left == crops[index - 1][0, 0, 0]) and np.all(right == crops[(index + 1) % 3][0, 0, 0])
            assert len(left) <= LOOSE_SLICE[1] * 20 and len(right) <= LOOSE_SLICE[1] * 20
            sides.add((len(left) > 0, len(right) > 0))
    assert sides == {(False, False), (True, False), (False, True), (True, True)}


def test_loosening_changes_lcd_registers_only(digits_root):
    grouped = index_crops(digits_root)
    lcd, counter = grouped["lcd/lcd2"][:5], grouped["powermeter/betar"][:5]

    def render(picks, loose):
        return render_register(picks, 0, np.random.default_rng(1), cell_h=60, loose=loose)

    assert np.array_equal(render(counter, 1.0), render(counter, 0.0))  # no draw, no change: counters stay as they were
    assert render(lcd, 1.0).shape[1] > render(lcd, 0.0).shape[1]  # slices widen the panel


def bar_crop(height: int) -> np.ndarray:
    """A dark upright bar (a `1`) on light paper."""
    crop = np.full((height, height // 2, 3), 230, np.uint8)
    crop[height // 8 : -height // 8, height // 4 - height // 16 : height // 4 + height // 16] = 20
    return crop


def ink_columns(cell: np.ndarray, row: int) -> np.ndarray:
    return np.flatnonzero(cell[row, :, 0] < 128)


def test_restyled_cells_share_one_stroke_weight_and_one_slant():
    crops = [bar_crop(64), bar_crop(64)]
    widths, leans = set(), []
    for seed in range(30):
        styled = restyle_cells(crops, np.random.default_rng(seed))
        assert [cell.shape for cell in styled] == [crop.shape for crop in crops] and styled[0].dtype == np.uint8
        assert np.array_equal(styled[0], styled[1])  # one style for the whole register
        top, bottom = ink_columns(styled[0], 12), ink_columns(styled[0], 51)
        assert len(top) and len(bottom)  # thinning never erases the digit
        widths.add(len(ink_columns(styled[0], 32)) > len(ink_columns(crops[0], 32)))
        lean = (top.mean() - bottom.mean()) / 39  # columns per row, top against bottom
        assert abs(lean) <= RESTYLE_SLANT + 0.05
        leans.append(lean)
    assert widths == {True, False}  # thickened and thinned strokes
    assert min(leans) < -0.05 and max(leans) > 0.05  # leaning either way


def test_restyling_at_zero_draws_nothing(digits_root):
    picks = index_crops(digits_root)["powermeter/betar"][:5]

    def render(restyle):
        rng = np.random.default_rng(2)
        return render_register(picks, 1, rng, cell_h=60, restyle=restyle), rng.random()

    (plain, after_plain), (styled, after_styled) = render(0.0), render(1.0)
    assert not np.array_equal(plain, styled) and after_plain != after_styled
    assert np.array_equal(render(0.0)[0], plain)


def digit_cell(ink, paper) -> np.ndarray:
    cell = np.full((48, 32, 3), paper, np.uint8)
    cv2.putText(cell, "7", (4, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.4, ink, 3, cv2.LINE_AA)
    return cell


def test_red_wheels_and_red_digits_are_told_from_black_brown_and_grey_ones():
    white, black, red = (235, 235, 235), (20, 20, 20), (40, 40, 200)  # BGR
    brown = (97, 104, 110)  # the median paper of `watermeter/pp`'s wheels, "dark red-brown" to the eye
    assert is_red_wheel(digit_cell(white, red)) and is_red_wheel(digit_cell(red, white))
    for ink, paper in ((black, white), (white, black), (white, brown), (black, (150, 150, 150))):
        assert not is_red_wheel(digit_cell(ink, paper)), (ink, paper)


def test_the_real_crop_set_has_red_wheels_where_counters_have_decimal_wheels(digits_root):
    grouped = index_crops(digits_root)
    picked = {model: grouped[model][::5] for model in ("watermeter/jvi", "powermeter/iskra_t3f", "lcd/lcd_pb")}
    share = {model: np.mean([c.red for c in crops]) for model, crops in mark_red_wheels(picked).items()}
    assert share["watermeter/jvi"] > 0.5 and share["powermeter/iskra_t3f"] == share["lcd/lcd_pb"] == 0.0, share


def test_integer_positions_take_no_red_wheel_where_the_model_has_another_of_that_digit():
    black = [DigitCrop(Path(f"b{d}.jpg"), "watermeter/x", d, 0) for d in range(10)]
    red = [replace(crop, path=Path(f"r{crop.digit}.jpg"), red=True) for crop in black]
    only_red_seven = [crop for crop in black if crop.digit != 7]
    rng = np.random.default_rng(0)
    decimal_reds = 0
    for _ in range(200):
        picks = pick_crops(black + red, 6, rng, rolled_last=0.0, decimals=2)
        assert not any(crop.red for crop in picks[:4])
        decimal_reds += sum(crop.red for crop in picks[4:])
        chosen = pick_crops(black + red, [1, 2, 3, 4], rng, rolled_last=0.0, decimals=1)
        assert [c.digit for c in chosen] == [1, 2, 3, 4] and not any(c.red for c in chosen[:3])
        sevens = pick_crops(only_red_seven + red, [7, 7, 1], rng, rolled_last=0.0)  # no black 7: a red one
        assert [c.digit for c in sevens] == [7, 7, 1] and sevens[0].red and not sevens[2].red
    assert 100 < decimal_reds < 300  # decimal positions draw from every crop: about half of them red


def test_a_make_without_red_wheels_draws_the_same_crops_and_random_numbers_whatever_its_decimals():
    """The red-wheel rule leaves every other make's strips byte for byte as they were."""
    crops = [DigitCrop(Path(f"{i}.jpg"), "powermeter/x", i % 10, 0) for i in range(40)]
    crops += [DigitCrop(Path(f"r{i}.jpg"), "powermeter/x", i % 10, 3) for i in range(10)]  # rolled wheels
    for digits in (6, [1, 2, 3, 4, 5, 6]):
        with_decimals, without = np.random.default_rng(4), np.random.default_rng(4)
        for _ in range(50):
            assert pick_crops(crops, digits, with_decimals, 0.5, decimals=2) == pick_crops(crops, digits, without, 0.5)
        assert with_decimals.random() == without.random()


def test_more_decimals_than_digits_are_refused():
    crops = [DigitCrop(Path(f"{i}.jpg"), "powermeter/x", i, 0) for i in range(10)]
    for decimals in (-1, 5):
        with pytest.raises(ValueError, match="decimals for a register of 4 digits"):
            pick_crops(crops, 4, np.random.default_rng(0), 0.0, decimals=decimals)
