from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from meterread import sink
from meterread.storage import resolve

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def row(uri="file:///b/M1/20260101T000000.jpg", day=date(2026, 1, 1), **extra):
    return {
        "run_id": "r1",
        "image_uri": uri,
        "capture_date": day,
        "status": "accepted",
        "reasons": [],
        "reading": Decimal("12.5"),
        "processed_at": NOW,
        **extra,
    }


def test_schema_has_the_documented_columns_in_order():
    documented = [
        "run_id",
        "image_uri",
        "image_etag",
        "image_bytes",
        "meter_id",
        "captured_at",
        "capture_date",
        "reading_text",
        "reading",
        "confidence",
        "status",
        "reasons",
        "meter_type",
        "model_id",
        "adapter_id",
        "prompt",
        "preprocess_version",
        "blur",
        "brightness",
        "processed_at",
    ]
    names = sink.SCHEMA.names
    assert [name for name in names if name in documented] == documented
    assert sink.SCHEMA.field("reasons").type == pa.list_(pa.string())
    assert sink.SCHEMA.field("captured_at").type == pa.timestamp("us", tz="UTC")


def test_rows_to_table_fills_missing_nullable_columns():
    table = sink.rows_to_table([row()])
    assert table.schema == sink.SCHEMA
    assert table.column("meter_id").to_pylist() == [None]
    assert table.column("reading").to_pylist() == [Decimal("12.500000")]


def test_write_shard_is_deterministic_and_idempotent(tmp_path):
    fs, root = resolve(str(tmp_path))
    rows = [row(), row(uri="file:///b/M1/20260102T000000.jpg", day=date(2026, 1, 2))]
    first = sink.write_shard(fs, root, rows, "run-1", "abc")
    second = sink.write_shard(fs, root, rows, "run-1", "abc")
    assert first == second and len(first) == 2
    assert first[0].endswith("capture_date=2026-01-01/part-run-1-abc.parquet")
    table = sink.read_output(fs, root)
    assert table.num_rows == 2 and table.schema == sink.SCHEMA
    assert sorted(table.column("capture_date").to_pylist()) == [date(2026, 1, 1), date(2026, 1, 2)]


def test_read_output_of_missing_dataset_is_empty(tmp_path):
    fs, root = resolve(str(tmp_path / "nothing"))
    assert sink.read_output(fs, root).num_rows == 0


@pytest.mark.parametrize("name", ["../x", "a/b", "", "a b", ".hidden", "x" * 200])
def test_unsafe_names_cannot_escape_the_output(name):
    with pytest.raises(ValueError):
        sink.part_name(name, "shard")


def test_reason_codes_is_added_nullable_and_older_files_read_it_as_null(tmp_path):
    assert sink.SCHEMA.names[-1] == "reason_codes" and sink.SCHEMA.field("reason_codes").nullable
    assert sink.SCHEMA.field("reason_codes").type == pa.list_(pa.string())
    fs, root = resolve(str(tmp_path))
    sink.write_shard(fs, root, [row(reason_codes=["storage_error"])], "run-2", "new")
    older = sink.rows_to_table([row(uri="file:///b/M1/old.jpg")]).drop_columns(["capture_date", "reason_codes"])
    pq.write_table(older, f"{root}/capture_date=2026-01-01/part-run-1-old.parquet")  # written before the column
    codes = dict(zip(*sink.read_output(fs, root, columns=["image_uri", "reason_codes"]).to_pydict().values()))
    assert codes == {"file:///b/M1/20260101T000000.jpg": ["storage_error"], "file:///b/M1/old.jpg": None}


def test_files_in_the_output_that_are_not_the_dataset_are_skipped_with_a_warning(tmp_path, caplog):
    fs, root = resolve(str(tmp_path))
    sink.write_shard(fs, root, [row()], "run-1", "abc")
    sink.write_manifest(fs, root, {"run_id": "run-1"})
    strays = ["README.txt", ".DS_Store", "photos/M1/20260101T000000.jpg", "capture_date=2026-01-01/notes.txt"]
    for name in strays:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"not parquet")
    (tmp_path / "capture_date=2026-01-01" / ".0123abcd.tmp").write_bytes(b"a write in flight")
    with caplog.at_level("WARNING", logger="meterread.sink"):
        table = sink.read_output(fs, root)
    assert table.num_rows == 1 and table.schema == sink.SCHEMA
    (warning,) = [record.getMessage() for record in caplog.records]
    assert "ignoring 4 file(s)" in warning and all(name in warning for name in strays)
    assert "_manifests" not in warning and ".tmp" not in warning
