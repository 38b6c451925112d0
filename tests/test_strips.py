"""Strips from the real digit crops in ../shared/data (tests may read it; the product does not need it)."""

from pathlib import Path

import cv2
import pytest

from meterread.dataset import load_split
from meterread.strips import index_crops, parse_crop_name, strip_label, write_strip_dataset, write_strips

DIGITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "meter-digits"
needs_data = pytest.mark.skipif(not DIGITS.is_dir(), reason="../shared/data/meter-digits is not beside the checkout")


@pytest.mark.parametrize(
    ("name", "parsed"),
    [("4.7_x.jpg", (4, 7)), ("0.0_y.jpg", (0, 0)), ("3_z.jpg", (3, 0)), ("NOTICE", None), ("x_1.jpg", None)],
)
def test_crop_names_carry_labels(name, parsed):
    assert parse_crop_name(name) == parsed


@needs_data
def test_strip_labels_match_their_crops(tmp_path):
    records = write_strips(DIGITS, tmp_path, n=20, digits=5, seed=1)
    crops = {c.path.name: c for group in index_crops(DIGITS).values() for c in group}
    assert len(records) == 20
    for record in records:
        assert len(record["suffix"]) == 5 and record["suffix"].isdigit()
        image = cv2.imread(str(tmp_path / record["image"]))
        assert image is not None and image.shape[0] == 64 and image.shape[1] > 5 * 10
        picks = [crops[name] for name in record["crops"]]
        assert record["suffix"] == strip_label(picks) == "".join(str(c.digit) for c in picks)
        assert all(c.tenths == 0 for c in picks[:-1])  # rolled wheels only in the last position
    assert any(crops[r["crops"][-1]].tenths > 0 for r in records)  # ...where they do appear, read as lower digit


@needs_data
def test_held_out_models_never_reach_training(tmp_path):
    holdout = ["powermeter/iskra_t3f"]
    counts = write_strip_dataset(
        DIGITS, tmp_path, {"train": 30, "valid": 5, "test": 10}, digits=6, seed=2, holdout=holdout
    )
    assert counts == {"train": 30, "valid": 5, "test": 10}
    train = load_split(str(tmp_path), "train")
    test_lines = (tmp_path / "test" / "annotations.jsonl").read_text()
    assert all("iskra" not in s.image for s in train.samples) and train.problems == ()
    assert test_lines.count("powermeter/iskra_t3f") == 10
    with pytest.raises(ValueError, match="unknown held-out"):
        write_strip_dataset(DIGITS, tmp_path / "x", {"train": 1}, 6, 2, ["nope/none"])
