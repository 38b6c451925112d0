"""Crop labels and the leave-models-out split."""

from pathlib import Path

import pytest

from meterread.data.crops import (
    HELDOUT_MODELS,
    DigitCrop,
    crop_part,
    index_crops,
    inner_crops,
    is_lcd,
    parse_crop_name,
    rolled_crops,
    select_part,
)


@pytest.mark.parametrize(
    ("name", "parsed"),
    [("4.7_x.jpg", (4, 7)), ("0.0_y.jpg", (0, 0)), ("3_z.jpg", (3, 0)), ("NOTICE", None), ("x_1.jpg", None)],
)
def test_crop_names_carry_labels(name, parsed):
    assert parse_crop_name(name) == parsed


def crop(model: str, name: str) -> DigitCrop:
    return DigitCrop(Path(name), model, *parse_crop_name(name))


def test_parts_are_deterministic_and_held_out_models_are_whole():
    seen = [crop("powermeter/iskra_t3f", f"{i % 10}_{i}.jpg") for i in range(400)]
    parts = [crop_part(c) for c in seen]
    assert parts == [crop_part(c) for c in seen]
    assert {"train", "valid", "test"} == set(parts) and "heldout" not in parts
    assert 0.7 < parts.count("train") / len(parts) < 0.9
    assert all(crop_part(crop(model, "1_a.jpg")) == "heldout" for model in HELDOUT_MODELS)


def test_inner_and_rolled_pools():
    crops = [crop("gasmeter/gmt", name) for name in ("3_a.jpg", "3.1_b.jpg", "3.5_c.jpg", "3.6_d.jpg", "3.9_e.jpg")]
    assert [c.tenths for c in inner_crops(crops)] == [0, 1]
    assert [c.tenths for c in rolled_crops(crops)] == [1, 5]  # at most half-way: read as the lower digit
    assert is_lcd("lcd/lcd2") and is_lcd("watermeter/lcd") and not is_lcd("watermeter/pp")


def test_real_split_has_every_part_and_no_overlap(digits_root):
    grouped = index_crops(digits_root)
    assert len(grouped) == 18 and sum(map(len, grouped.values())) == 13367
    parts = {part: select_part(grouped, part) for part in ("train", "valid", "test", "heldout")}
    assert sorted(parts["heldout"]) == sorted(HELDOUT_MODELS)
    assert not set(HELDOUT_MODELS) & (set(parts["train"]) | set(parts["valid"]) | set(parts["test"]))
    names = {part: {c.name for crops in groups.values() for c in crops} for part, groups in parts.items()}
    assert not names["train"] & names["valid"] and not names["train"] & names["test"]
    assert not names["valid"] & names["test"]
    with pytest.raises(ValueError, match="unknown held-out"):
        select_part(grouped, "train", ("nope/none",))
    with pytest.raises(ValueError, match="unknown part"):
        select_part(grouped, "everything")


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no labelled digit crops"):
        index_crops(tmp_path)
