from meterread.preprocess import InputLayout
from meterread.training.dataset import layout_for, load_dataset, manifest_digest, parse_annotations


def test_bad_lines_are_counted_with_line_numbers():
    text = "\n".join(
        [
            '{"image": "a.jpg", "prefix": "p", "suffix": "12.5", "meter_id": "M1"}',
            "not json",
            '{"image": "b.jpg"}',
            '{"image": "../escape.jpg", "suffix": "1"}',
            '["a list"]',
            "",
            '{"image": "c.jpg", "suffix": "7"}',
        ]
    )
    split = parse_annotations(text, "/data/train", "train")
    assert [s.image for s in split.samples] == ["/data/train/a.jpg", "/data/train/c.jpg"]
    assert split.samples[0].meter_id == "M1" and split.samples[1].prefix == ""
    assert [p.split(":")[0] for p in split.problems] == [
        "train/annotations.jsonl line 2",
        "train/annotations.jsonl line 3",
        "train/annotations.jsonl line 4",
        "train/annotations.jsonl line 5",
    ]
    assert "missing or empty suffix" in split.problems[1] and "stay inside" in split.problems[2]


def test_images_marked_as_displays_skip_the_display_search_and_keep_the_fold():
    text = '{"image": "strip.jpg", "suffix": "1", "display": true}\n{"image": "photo.jpg", "suffix": "2"}\n'
    strip, photo = parse_annotations(text, "/data/train", "train").samples
    assert strip.display and not photo.display
    layout = InputLayout(crop_display=True, rows=2)
    assert layout_for(strip, layout) == InputLayout(crop_display=False, rows=2)
    assert layout_for(photo, layout) is layout
    # only a JSON true marks a display: a string "false" must not
    assert not parse_annotations('{"image": "x.jpg", "suffix": "1", "display": "false"}', "/d", "t").samples[0].display


def test_dataset_from_s3_and_manifest_digest(s3_bucket):
    fs, bucket = s3_bucket
    fs.pipe_file(f"{bucket}/ds/train/annotations.jsonl", b'{"image": "x.jpg", "suffix": "1"}\n')
    fs.pipe_file(f"{bucket}/ds/train/x.jpg", b"...")
    splits = load_dataset(f"s3://{bucket}/ds")
    assert splits["train"].samples[0].image == f"s3://{bucket}/ds/train/x.jpg"
    assert splits["valid"].samples == () and splits["test"].samples == ()
    before = manifest_digest(splits)
    fs.pipe_file(f"{bucket}/ds/train/annotations.jsonl", b'{"image": "x.jpg", "suffix": "2"}\n')
    assert manifest_digest(load_dataset(f"s3://{bucket}/ds")) != before
