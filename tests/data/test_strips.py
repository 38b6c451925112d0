"""Strips from the real digit crops: determinism, labels that match their crops, no held-out model in training."""

import json
from pathlib import Path

import cv2
import pytest

from meterread.data.crops import HELDOUT_MODELS, NEAR_CLEAN_TENTHS, DigitCrop, index_crops, parse_crop_name
from meterread.data.registers import reading_label
from meterread.data.strips import ROLLED_LAST, model_weights, write_strip_dataset
from meterread.training.dataset import load_split

SIZES = {"train": 24, "valid": 6, "test": 6, "heldout": 12}


@pytest.fixture(scope="module")
def strips(digits_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("strips")
    assert write_strip_dataset(digits_root, out, SIZES, seed=5) == SIZES
    return out


def test_same_seed_same_bytes(digits_root, strips, tmp_path):
    write_strip_dataset(digits_root, tmp_path, {"train": 24}, seed=5)
    for path in (strips / "train").glob("*.jpg"):
        assert (tmp_path / "train" / path.name).read_bytes() == path.read_bytes()
    assert (tmp_path / "train" / "annotations.jsonl").read_text() == (
        strips / "train" / "annotations.jsonl"
    ).read_text()


def test_labels_match_their_crops(strips):
    for split in SIZES:
        for line in (strips / split / "annotations.jsonl").read_text().splitlines():
            record = json.loads(line)
            parsed = [parse_crop_name(name.rsplit("/", 1)[1]) for name in record["crops"]]
            digits = "".join(str(digit) for digit, _ in parsed)
            assert record["suffix"].replace(".", "") == digits  # every wheel read as its lower digit
            assert 4 <= len(digits) <= 8
            assert all(tenths <= 1 for _, tenths in parsed[:-1])  # rolled wheels only in the last position
            assert parsed[-1][1] <= 5
            assert all(name.startswith(record["meter_model"] + "/") for name in record["crops"])  # one model
            assert record["display"] is True  # the strip is the display: read whole, never searched for one
            image = cv2.imread(str(strips / split / record["image"]))
            assert image is not None and image.shape[1] > image.shape[0]


def test_reading_label_puts_decimals_after_a_point(digits_root):
    picks = index_crops(digits_root)["gasmeter/gmt"][:5]
    digits = "".join(str(c.digit) for c in picks)
    assert reading_label(picks, 0) == digits and reading_label(picks, 2) == f"{digits[:3]}.{digits[3:]}"


def test_no_held_out_model_or_crop_leaks_into_training(strips):
    manifest = json.loads((strips / "manifest.json").read_text())
    splits = manifest["splits"]
    assert manifest["holdout"] == list(HELDOUT_MODELS)
    assert set(splits["heldout"]["models"]) <= set(HELDOUT_MODELS)
    for split in ("train", "valid", "test"):
        assert not set(splits[split]["models"]) & set(HELDOUT_MODELS), split
    crops = {split: set(splits[split]["crops"]) for split in SIZES}
    assert not crops["train"] & crops["valid"] and not crops["train"] & crops["test"]
    assert not crops["train"] & crops["heldout"]
    train = load_split(str(strips), "train")
    assert len(train.samples) == SIZES["train"] and train.problems == ()
    assert all(s.meter_model not in HELDOUT_MODELS for s in train.samples)


def test_unknown_split_or_model_is_refused(digits_root, tmp_path):
    with pytest.raises(ValueError, match="unknown held-out"):
        write_strip_dataset(digits_root, tmp_path, {"train": 1}, 2, ("nope/none",))
    with pytest.raises(ValueError, match="unknown split"):
        write_strip_dataset(digits_root, tmp_path, {"everything": 1}, 2)


def test_font_makes_join_the_training_strips_only(digits_root, tmp_path):
    sizes = {"train": 40, "valid": 4, "test": 4, "heldout": 4}
    assert write_strip_dataset(digits_root, tmp_path, sizes, seed=6, font_makes=3, font_crops=30) == sizes
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    makes = [make["model"] for make in manifest["font_makes"]]
    assert len(makes) == 3 and all(model.startswith("font/") for model in makes)
    assert set(manifest["splits"]["train"]["models"]) & set(makes)  # drawn alongside the real models
    for split in ("valid", "test", "heldout"):
        assert not set(manifest["splits"][split]["models"]) & set(makes), split  # evaluation stays real
    assert sorted(index_crops(tmp_path / "font-makes")) == sorted(makes)
    with pytest.raises(ValueError, match="font makes only join training strips"):
        write_strip_dataset(digits_root, tmp_path / "none", {"test": 4}, seed=6, font_makes=3)
    with pytest.raises(ValueError, match="font makes need counts"):
        write_strip_dataset(digits_root, tmp_path / "bad", sizes, seed=6, font_makes=-1)
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_a_font_share_splits_the_draws_and_keeps_the_weights_within_each_group():
    crops = {name: [DigitCrop(Path(f"{i}.jpg"), name, i % 10, 0) for i in range(n)]
             for name, n in (("a/one", 100), ("a/two", 25), ("font/x", 16), ("font/y", 64))}  # fmt: skip
    models, weights = model_weights(crops, font_share=0.3)
    share = dict(zip(models, weights))
    assert share["font/x"] + share["font/y"] == pytest.approx(0.3)
    assert share["a/one"] / share["a/two"] == pytest.approx(2.0)
    assert share["font/y"] / share["font/x"] == pytest.approx(2.0)
    assert list(model_weights(crops)[1]) == pytest.approx([10 / 27, 5 / 27, 4 / 27, 8 / 27])  # sqrt of crops


def test_a_font_share_sets_how_many_training_strips_font_makes_draw(digits_root, tmp_path):
    sizes = {"train": 200}
    write_strip_dataset(digits_root, tmp_path, sizes, seed=6, font_makes=3, font_crops=20, font_share=0.25)
    models = [json.loads(line)["meter_model"] for line in (tmp_path / "train" / "annotations.jsonl").open()]
    share = sum(model.startswith("font/") for model in models) / len(models)
    assert 0.15 < share < 0.35  # p = 0.25, n = 200: the binomial's 99.9% band; by crops alone about 4% here
    assert json.loads((tmp_path / "manifest.json").read_text())["font_share"] == 0.25
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="font share must be between 0 and 1"):
            write_strip_dataset(digits_root, tmp_path / "bad", sizes, seed=6, font_makes=3, font_share=bad)
    with pytest.raises(ValueError, match="needs font makes"):
        write_strip_dataset(digits_root, tmp_path / "bad", sizes, seed=6, font_share=0.5)


def test_font_makes_leave_the_evaluation_strips_byte_for_byte_unchanged(digits_root, tmp_path):
    sizes = {"train": 20, "valid": 4, "test": 4, "heldout": 4}
    write_strip_dataset(digits_root, tmp_path / "real", sizes, seed=6)
    write_strip_dataset(digits_root, tmp_path / "fonts", sizes, seed=6, font_makes=2, font_crops=20)
    for split in ("valid", "test", "heldout"):
        for path in (tmp_path / "real" / split).iterdir():
            assert (tmp_path / "fonts" / split / path.name).read_bytes() == path.read_bytes(), path


def test_a_rerun_with_fewer_font_makes_trains_on_those_only(digits_root, tmp_path):
    sizes = {"train": 60}
    write_strip_dataset(digits_root, tmp_path, sizes, seed=6, font_makes=4, font_crops=20)
    write_strip_dataset(digits_root, tmp_path, sizes, seed=6, font_makes=2, font_crops=20)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    makes = {make["model"] for make in manifest["font_makes"]}
    assert len(makes) == 2 and set(index_crops(tmp_path / "font-makes")) == makes
    assert {m for m in manifest["splits"]["train"]["models"] if m.startswith("font/")} <= makes


def test_a_rerun_into_the_same_folder_leaves_only_its_own_strips(digits_root, tmp_path):
    write_strip_dataset(digits_root, tmp_path, {"train": 20, "heldout": 4}, seed=6)
    (tmp_path / "train" / "notes.txt").write_text("mine")
    write_strip_dataset(digits_root, tmp_path, {"train": 8}, seed=7)
    named = [json.loads(line)["image"] for line in (tmp_path / "train" / "annotations.jsonl").read_text().splitlines()]
    assert sorted(path.name for path in (tmp_path / "train").glob("*.jpg")) == sorted(named) and len(named) == 8
    assert not list((tmp_path / "heldout").iterdir())  # an earlier run's split is not evaluated as if current
    assert (tmp_path / "train" / "notes.txt").read_text() == "mine"  # what the writer did not make stays


def test_font_makes_take_fonts_only_from_the_folders_named(digits_root, tmp_path):
    (tmp_path / "fonts").mkdir()  # no TrueType font in it: Pillow's bundled font and Hershey fonts only
    sizes = {"train": 12}
    write_strip_dataset(
        digits_root, tmp_path / "out", sizes, seed=6, font_makes=6, font_crops=10, font_dirs=(str(tmp_path / "fonts"),)
    )
    drawn = json.loads((tmp_path / "out" / "manifest.json").read_text())["font_makes"]
    assert len(drawn) == 6 and not any("font_path" in make for make in drawn)
    with pytest.raises(FileNotFoundError, match="font folder"):
        write_strip_dataset(digits_root, tmp_path / "out", sizes, seed=6, font_makes=2, font_dirs=("/no/such",))
    assert (tmp_path / "out" / "train" / "annotations.jsonl").exists()  # refused before the old strips were cleared
    with pytest.raises(ValueError, match="only read for font makes"):
        write_strip_dataset(digits_root, tmp_path / "out", sizes, seed=6, font_dirs=(str(tmp_path / "fonts"),))


@pytest.mark.parametrize("option", ["recolour", "loose", "rolled_last", "restyle"])
def test_recolouring_loosening_rolling_and_restyling_change_training_strips_only(digits_root, tmp_path, option):
    sizes = {"train": 12, "valid": 4, "test": 4, "heldout": 4}
    write_strip_dataset(digits_root, tmp_path / "plain", sizes, seed=6)
    write_strip_dataset(digits_root, tmp_path / "changed", sizes, seed=6, **{option: 1.0})
    for split in ("valid", "test", "heldout"):
        for path in (tmp_path / "plain" / split).iterdir():
            assert (tmp_path / "changed" / split / path.name).read_bytes() == path.read_bytes(), path
    plain, changed = ((tmp_path / run / "train" / "annotations.jsonl").read_text() for run in ("plain", "changed"))
    assert plain != changed  # the changed strips drew their palettes or slices (test_labels_match_their_crops)
    assert json.loads((tmp_path / "changed" / "manifest.json").read_text())[option] == 1.0
    assert option not in json.loads((tmp_path / "plain" / "manifest.json").read_text())
    refusals = (({"train": 4}, -0.1, "a share"), ({"train": 4}, 1.5, "a share"), ({"test": 4}, 0.5, "train > 0"))
    for bad, share, message in refusals:
        with pytest.raises(ValueError, match=f"{option} .*{message}"):
            write_strip_dataset(digits_root, tmp_path / "bad", bad, seed=6, **{option: share})
    assert not (tmp_path / "bad").exists()


def test_rolled_last_sets_how_often_a_training_strip_ends_on_a_rolling_wheel(digits_root, tmp_path):
    def rolled_share(share):
        out = tmp_path / f"rolled-{share}"
        write_strip_dataset(digits_root, out, {"train": 60}, seed=6, rolled_last=share)
        records = [json.loads(line) for line in (out / "train" / "annotations.jsonl").read_text().splitlines()]
        ends = [parse_crop_name(Path(r["crops"][-1]).name)[1] for r in records if r["meter_type"] != "lcd"]
        return sum(tenths > NEAR_CLEAN_TENTHS for tenths in ends) / len(ends)  # inner crops may be barely rolled

    never, default, always = rolled_share(0.0), rolled_share(ROLLED_LAST), rolled_share(1.0)
    assert never == 0 < default < always
