"""`meterread review export|import|dataset` end to end over a written output: local folders and the moto S3 server."""

import csv
import io
import json
import logging

import pytest
from typer.testing import CliRunner

from meterread.cli import app
from meterread.read import sink
from meterread.review.dataset import split_of
from meterread.review.records import CORRECTIONS_SCHEMA
from meterread.review.store import CORRECTIONS_DIR, read_corrections
from meterread.storage import read_bytes, resolve, write_bytes
from meterread.tables.store import refresh_tables
from meterread.training.dataset import load_dataset
from tests.review.outputs import photo_bytes, write_output

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["review", *map(str, args)])


@pytest.fixture
def local(tmp_path):
    """(output, review folder, URIs by (meter, day)) of a written output with its photos beside it."""
    uris = write_output(str(tmp_path / "photos"), str(tmp_path / "out"))
    return str(tmp_path / "out"), tmp_path / "review", uris


def fill_csv(text: str, values: dict[str, tuple[str, str]]) -> str:
    """The exported CSV with `corrected_reading` and `reviewer` filled for the photos in `values`."""
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        row["corrected_reading"], row["reviewer"] = values.get(row["image_uri"], ("", ""))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def current_row(output: str, image_uri: str) -> dict:
    tables = refresh_tables(output)
    return next(row for row in tables["readings_current"].to_pylist() if row["image_uri"] == image_uri)


def test_export_edit_import_and_the_tables_show_the_corrected_reading(local):
    output, review, uris = local
    exported = invoke("export", output, review)
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["queued"] == 2
    assert {p.name for p in review.iterdir()} == {"tasks.json", "review.csv", "label_config.xml"}
    edited = review / "edited.csv"
    edited.write_text(fill_csv((review / "review.csv").read_text(), {uris["A", 2]: ("108", "ana")}))

    imported = invoke("import", output, edited)
    assert imported.exit_code == 0, imported.output
    result = json.loads(imported.stdout)
    assert (result["source"], result["corrections"], result["skipped"]) == ("csv", 1, 1)
    assert result["written"].startswith(f"file://{output}/{CORRECTIONS_DIR}/corrections-")

    row = current_row(output, uris["A", 2])
    assert (row["status"], str(row["reading"]), row["model_status"], str(row["model_reading"])) == (
        "accepted", "108.000000", "flagged", "180.000000",
    )  # fmt: skip
    assert row["corrected_by"] == "ana"
    daily = refresh_tables(output)["consumption_daily"].to_pylist()
    assert [(d["meter_id"], d["capture_date"].day, str(d["usage"])) for d in daily if d["meter_id"] == "A"] == [
        ("A", 1, "None"), ("A", 2, "8.000000"), ("A", 3, "7.000000"),
    ]  # fmt: skip
    again = invoke("export", output, review)
    assert json.loads(again.stdout)["queued"] == 1  # the corrected photo has left the queue


def label_studio_export(tasks: list[dict], readings: dict[str, str]) -> list[dict]:
    """What Label Studio exports after someone typed `readings` (image_uri -> text) into the prefilled tasks."""
    exported = []
    for number, task in enumerate(tasks, 1):
        annotations = []
        if task["data"]["image_uri"] in readings:
            result = {**task["predictions"][0]["result"][0], "value": {"text": [readings[task["data"]["image_uri"]]]}}
            annotations = [{"id": number, "completed_by": {"id": 3, "email": "bo@example.com"}, "result": [result]}]
        exported.append({"id": 40 + number, **task, "annotations": annotations})
    return exported


def test_a_label_studio_export_round_trips(local):
    output, review, uris = local
    assert invoke("export", output, review, "--limit", 1).exit_code == 0
    tasks = json.loads((review / "tasks.json").read_text())
    assert [task["data"]["image"] for task in tasks] == [uris["A", 2]]  # newest first; A before B at a tie
    assert tasks[0]["predictions"][0]["result"][0]["value"] == {"text": ["180"]}
    assert tasks[0]["predictions"][0]["score"] == 0.3
    export = review / "export.json"
    export.write_text(json.dumps(label_studio_export(tasks, {uris["A", 2]: "0108"})))

    imported = invoke("import", output, export)
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout)["source"] == "label-studio"
    (correction,) = read_corrections(*resolve(output)).to_pylist()
    assert (correction["corrected_text"], str(correction["corrected_reading"])) == ("0108", "108.000000")
    assert (correction["corrected_by"], correction["source"]) == ("bo@example.com", "label-studio")
    assert str(current_row(output, uris["A", 2])["reading"]) == "108.000000"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([("A", 2, "108"), ("Z", 9, "5")], "row 3: photo file:///nowhere/Z.jpg is not in the output"),
        ([("A", 2, "1O8")], "row 2: value '1O8' is not a number"),
        ([("A", 2, "108"), ("B", 2, "501"), ("A", 2, "109")], "appears 2 times (row 2, row 4)"),
    ],
    ids=["unknown-photo", "not-a-number", "duplicate"],
)
def test_a_bad_import_exits_non_zero_names_the_row_and_writes_nothing(local, rows, expected):
    output, review, uris = local
    review.mkdir()
    lines = ["image_uri,corrected_reading,reviewer"]
    lines += [f"{uris.get((meter, day), 'file:///nowhere/Z.jpg')},{value},ana" for meter, day, value in rows]
    (review / "bad.csv").write_text("\n".join(lines) + "\n")
    result = invoke("import", output, review / "bad.csv")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and expected in result.stderr
    assert "nothing written" in result.stderr
    fs, root = resolve(output)
    assert not fs.exists(f"{root}/{CORRECTIONS_DIR}")
    assert read_corrections(fs, root).num_rows == 0


def test_a_missing_file_is_an_error_not_a_traceback(local):
    output, review, _ = local
    result = invoke("import", output, review / "nope.csv")
    assert result.exit_code == 1 and "nope.csv" in result.stderr and "file not found" in result.stderr


def test_dataset_readers_skip_the_corrections_silently(local, caplog):
    output, review, uris = local
    review.mkdir()
    (review / "one.csv").write_text(f"image_uri,corrected_reading,reviewer\n{uris['A', 2]},108,ana\n")
    assert invoke("import", output, review / "one.csv").exit_code == 0
    with caplog.at_level(logging.WARNING):
        assert sink.read_output(*resolve(output)).num_rows == 4
    assert "not part of the dataset" not in caplog.text


def test_no_corrections_read_as_an_empty_table_with_the_schema(tmp_path):
    table = read_corrections(*resolve(str(tmp_path / "out")))
    assert (table.num_rows, table.schema) == (0, CORRECTIONS_SCHEMA)


def test_review_dataset_loads_with_meterread_dataset_and_leaves_out_changed_photos(local, tmp_path):
    output, review, uris = local
    review.mkdir()
    values = {uris["A", 2]: ("108", "ana"), uris["B", 2]: ("0501", "ana"), uris["A", 3]: ("115", "bo")}
    lines = ["image_uri,corrected_reading,reviewer", *(f"{uri},{v},{who}" for uri, (v, who) in values.items())]
    (review / "all.csv").write_text("\n".join(lines) + "\n")
    assert invoke("import", output, review / "all.csv").exit_code == 0
    fs, path = resolve(uris["A", 3])
    write_bytes(fs, path, b"a new version, not read yet")  # its correction no longer matches the bytes

    built = invoke("dataset", output, tmp_path / "ds")
    assert built.exit_code == 0, built.output
    manifest = json.loads(built.stdout)
    assert manifest["skipped"] == [{"image_uri": uris["A", 3], "reason": "content changed since it was corrected"}]
    splits = load_dataset(str(tmp_path / "ds"))
    assert all(split.problems == () for split in splits.values())
    samples = {sample.meter_id: (name, sample) for name, split in splits.items() for sample in split.samples}
    assert {meter: sample.suffix for meter, (_, sample) in samples.items()} == {"A": "108", "B": "0501"}
    for meter, (name, sample) in samples.items():
        assert name == split_of(uris[meter, 2])
        assert open(sample.image, "rb").read() == photo_bytes(meter, 2)
        assert sample.meter_type == "water-mechanical"
    assert manifest["counts"] == {name: len(split.samples) for name, split in splits.items()}


def test_the_round_trip_on_s3(s3_bucket, tmp_path):
    fs, bucket = s3_bucket
    output, review = f"s3://{bucket}/out", f"s3://{bucket}/review"
    uris = write_output(f"s3://{bucket}/photos", output)
    assert uris["A", 2] == f"s3://{bucket}/photos/A/20260302T200000.jpg"
    assert invoke("export", output, review).exit_code == 0
    tasks = json.loads(fs.cat_file(f"{bucket}/review/tasks.json"))
    assert tasks[0]["data"]["image"] == uris["A", 2]  # kept as s3://: Label Studio's cloud storage resolves it
    edited = fill_csv(fs.cat_file(f"{bucket}/review/review.csv").decode(), {uris["A", 2]: ("108", "ana")})
    fs.pipe_file(f"{bucket}/review/edited.csv", edited.encode())

    imported = invoke("import", output, f"{review}/edited.csv")
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout)["written"].startswith(f"s3://{bucket}/out/{CORRECTIONS_DIR}/corrections-")
    assert str(current_row(output, uris["A", 2])["reading"]) == "108.000000"
    assert invoke("dataset", output, tmp_path / "ds").exit_code == 0
    (sample,) = [sample for split in load_dataset(str(tmp_path / "ds")).values() for sample in split.samples]
    assert (sample.suffix, read_bytes(*resolve(sample.image))) == ("108", photo_bytes("A", 2))
