"""Combining datasets by linking, not copying."""

import json

import pytest

from meterread.data.mix import mix_datasets, prefixed_lines
from meterread.training.dataset import load_split


def test_prefixed_lines_keep_every_field():
    lines = prefixed_lines('{"image": "a/b.jpg", "suffix": "12"}\n\nnot json\n', "strips")
    assert json.loads(lines[0]) == {"image": "strips/a/b.jpg", "suffix": "12", "source": "strips"}
    assert lines[1] == "not json"  # left for the loader to report with its line number


def write_split(root, split, names):
    (root / split).mkdir(parents=True)
    for name in names:
        (root / split / name).write_bytes(b"jpeg")
    lines = [json.dumps({"image": name, "suffix": "1"}) for name in names]
    (root / split / "annotations.jsonl").write_text("\n".join(lines) + "\n")


def test_mixed_dataset_loads_every_source(tmp_path):
    write_split(tmp_path / "strips", "train", ["s1.jpg", "s2.jpg"])
    write_split(tmp_path / "photos", "train", ["p1.jpg"])
    write_split(tmp_path / "photos", "valid", ["p2.jpg"])
    counts = mix_datasets(tmp_path / "mix", [tmp_path / "strips", tmp_path / "photos"])
    assert counts == {"train": 3, "valid": 1}
    train = load_split(str(tmp_path / "mix"), "train")
    assert train.problems == () and len(train.samples) == 3
    assert all(
        (tmp_path / "mix" / "train" / s.image.split("/train/", 1)[1]).read_bytes() == b"jpeg" for s in train.samples
    )


def test_mix_refuses_clashing_names_and_no_training_split(tmp_path):
    write_split(tmp_path / "a" / "x", "valid", ["v.jpg"])
    write_split(tmp_path / "b" / "x", "valid", ["v.jpg"])
    with pytest.raises(ValueError, match="distinct folder names"):
        mix_datasets(tmp_path / "mix", [tmp_path / "a" / "x", tmp_path / "b" / "x"])
    with pytest.raises(ValueError, match="has a training line"):
        mix_datasets(tmp_path / "mix", [tmp_path / "a" / "x"])
    assert mix_datasets(tmp_path / "valid-only", [tmp_path / "a" / "x"], require_train=False) == {"valid": 1}


def test_mix_refuses_an_empty_training_file(tmp_path):
    """`meterread synth OUT --n 0` or a review export that skipped every photo writes an empty annotations file."""
    write_split(tmp_path / "empty", "train", [])
    write_split(tmp_path / "strips", "valid", ["v.jpg"])
    with pytest.raises(ValueError, match="has a training line"):
        mix_datasets(tmp_path / "mix", [tmp_path / "empty", tmp_path / "strips"])
    assert not (tmp_path / "mix").exists()


def test_mix_refuses_a_source_both_flat_and_split(tmp_path):
    write_split(tmp_path, "both", ["f.jpg"])
    write_split(tmp_path / "both", "train", ["t.jpg"])
    with pytest.raises(ValueError, match="both at its root and in"):
        mix_datasets(tmp_path / "mix", [tmp_path / "both"])


def test_flat_source_is_training_photos(tmp_path):
    """`meterread synth` without --valid/--test writes annotations at its root: every photo is for training."""
    write_split(tmp_path, "flat", ["f1.jpg", "f2.jpg"])
    write_split(tmp_path / "strips", "valid", ["v.jpg"])
    counts = mix_datasets(tmp_path / "mix", [tmp_path / "flat", tmp_path / "strips"])
    assert counts == {"train": 2, "valid": 1}
    train = load_split(str(tmp_path / "mix"), "train")
    assert train.problems == () and {s.image.rsplit("/", 1)[1] for s in train.samples} == {"f1.jpg", "f2.jpg"}
    assert all(open(s.image, "rb").read() == b"jpeg" for s in train.samples)


def test_mix_refuses_a_source_without_annotations_before_writing(tmp_path):
    write_split(tmp_path / "strips", "train", ["s.jpg"])
    (tmp_path / "typo").mkdir()
    with pytest.raises(ValueError, match="typo has no annotations.jsonl"):
        mix_datasets(tmp_path / "mix", [tmp_path / "strips", tmp_path / "typo"])
    assert not (tmp_path / "mix").exists()
