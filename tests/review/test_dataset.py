"""Corrections -> annotation lines and a deterministic split (pure)."""

import dataclasses
from collections import Counter

from meterread.review.dataset import annotations_text, image_name, plan_splits, split_of
from meterread.training.dataset import parse_annotations
from tests.tables.series import CORRECTION_ROWS, content, uri


def test_the_split_depends_only_on_the_photo_and_is_about_80_10_10():
    uris = [f"s3://bucket/MTR-{n}/20260301T000000.jpg" for n in range(2000)]
    assert [split_of(u) for u in uris] == [split_of(u) for u in uris]
    shares = Counter(split_of(u) for u in uris)
    assert 1500 < shares["train"] < 1700 and 120 < shares["valid"] < 280 and 120 < shares["test"] < 280


def test_images_are_named_by_content_with_the_photos_suffix():
    assert image_name("s3://b/A/x.JPG", "ab" * 32) == f"images/{'ab' * 16}.jpg"
    assert image_name("s3://b/A/no-suffix", "ab" * 32) == f"images/{'ab' * 16}"


def test_each_correction_is_one_annotation_line_meterread_dataset_reads():
    splits = plan_splits([dataclasses.asdict(row) for row in CORRECTION_ROWS[:2]], {uri("A", 5): "water-mechanical"})
    assert set(splits) == {"train", "valid", "test"}
    lines = [line for split in splits.values() for line in split]
    assert sorted(lines, key=lambda line: line["suffix"]) == [
        {
            "image": f"images/{content('A', 5)[:32]}.jpg",
            "suffix": "17",
            "meter_id": "A",
            "meter_type": "water-mechanical",
            "source_uri": uri("A", 5),
            "content_sha256": content("A", 5),
            "corrected_by": "ana",
        },
        {
            "image": f"images/{content('B', 2)[:32]}.jpg",
            "suffix": "505",
            "meter_id": "B",
            "source_uri": uri("B", 2),
            "content_sha256": content("B", 2),
            "corrected_by": "ana",
        },
    ]
    split = parse_annotations(annotations_text(lines), "/data/train", "train")
    assert split.problems == ()
    assert [(sample.image, sample.suffix, sample.prefix) for sample in split.samples] == [
        (f"/data/train/{line['image']}", line["suffix"], "") for line in lines
    ]
