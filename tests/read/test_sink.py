import dataclasses
from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from meterread.read import sink
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
    assert sink.SCHEMA.field("reason_codes").nullable
    assert sink.SCHEMA.field("reason_codes").type == pa.list_(pa.string())
    fs, root = resolve(str(tmp_path))
    sink.write_shard(fs, root, [row(reason_codes=["storage_error"])], "run-2", "new")
    older = sink.rows_to_table([row(uri="file:///b/M1/old.jpg")]).drop_columns(["capture_date", "reason_codes"])
    pq.write_table(older, f"{root}/capture_date=2026-01-01/part-run-1-old.parquet")  # written before the column
    codes = dict(zip(*sink.read_output(fs, root, columns=["image_uri", "reason_codes"]).to_pydict().values()))
    assert codes == {"file:///b/M1/20260101T000000.jpg": ["storage_error"], "file:///b/M1/old.jpg": None}


def test_reading_pattern_is_the_last_column_added_and_older_files_read_it_as_null(tmp_path):
    assert sink.SCHEMA.names[-1] == "reading_pattern" and sink.SCHEMA.field("reading_pattern").nullable
    fs, root = resolve(str(tmp_path))
    sink.write_shard(fs, root, [row(reading_pattern="6.1")], "run-2", "new")
    older = sink.rows_to_table([row(uri="file:///b/M1/old.jpg")]).drop_columns(["capture_date", "reading_pattern"])
    pq.write_table(older, f"{root}/capture_date=2026-01-01/part-run-1-old.parquet")  # written before the column
    patterns = dict(zip(*sink.read_output(fs, root, columns=["image_uri", "reading_pattern"]).to_pydict().values()))
    assert patterns == {"file:///b/M1/20260101T000000.jpg": "6.1", "file:///b/M1/old.jpg": None}


def test_files_in_the_output_that_are_not_the_dataset_are_skipped_with_a_warning(tmp_path, caplog):
    fs, root = resolve(str(tmp_path))
    sink.write_shard(fs, root, [row()], "run-1", "abc")
    sink.write_manifest(fs, root, {"run_id": "run-1"})
    strays = ["README.txt", ".DS_Store", "photos/M1/20260101T000000.jpg", "capture_date=2026-01-01/notes.txt"]
    for name in strays:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"not parquet")
    (tmp_path / "capture_date=2026-01-01" / ".0123abcd.tmp").write_bytes(b"a write in flight")
    with caplog.at_level("WARNING", logger="meterread.read.sink"):
        table = sink.read_output(fs, root)
    assert table.num_rows == 1 and table.schema == sink.SCHEMA
    (warning,) = [record.getMessage() for record in caplog.records]
    assert "ignoring 4 file(s)" in warning and all(name in warning for name in strays)
    assert "_manifests" not in warning and ".tmp" not in warning


def test_the_row_type_has_exactly_the_dataset_columns():
    fields = {f.name: f for f in dataclasses.fields(sink.ReadingRow)}
    assert set(fields) == set(sink.SCHEMA.names)
    required = {name for name, f in fields.items() if f.default is dataclasses.MISSING}
    assert required == {f.name for f in sink.SCHEMA if not f.nullable}


def test_every_column_of_a_full_row_round_trips_with_its_arrow_type():
    full = sink.ReadingRow(
        **{
            **row(),
            "image_etag": "e",
            "image_bytes": 10,
            "content_sha256": "s",
            "meter_id": "M1",
            "captured_at": NOW,
            "captured_at_source": "key",
            "reading_text": "12.5",
            "confidence": 0.9,
            "meter_type": "gas",
            "model_id": "m",
            "adapter_id": "a",
            "model_fingerprint": "f",
            "prompt": "p",
            "preprocess_version": "v",
            "width": 224,
            "height": 224,
            "blur": 1.5,
            "brightness": 0.5,
            "meter_type_confidence": 0.7,
            "task_outputs": "{}",
            "reading_pattern": "4.1",
            "reason_codes": ["rollover"],
            "reasons": ["register rollover from 9 to 1"],
        }
    )
    table = sink.rows_to_table([full])
    assert table.schema == sink.SCHEMA and all(column.null_count == 0 for column in table.columns)
    back = table.to_pylist()[0]
    assert {name: back[name] for name in back} == {
        **dataclasses.asdict(full),
        "reading": Decimal("12.500000"),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"confidnce": 0.9}, r"unknown column\(s\) \['confidnce'\]"),
        ({"status": None, "drop": "status"}, r"missing required column\(s\) \['status'\]"),
    ],
)
def test_a_misspelt_or_missing_column_is_an_error_not_a_null(change, message):
    values = {**row(), **change}
    values.pop(values.pop("drop", None) or "", None)
    with pytest.raises(sink.RowError, match=message):
        sink.rows_to_table([values])


def test_reading_the_output_retries_a_transient_error_opening_a_file(memory_files_that_fail_to_open_once):
    fs, root = resolve("memory://retried-output/out")
    sink.write_shard(fs, root, [row(), row(uri="file:///b/M1/20260102T000000.jpg", day=date(2026, 1, 2))], "r", "a")
    assert sink.read_output(fs, root).num_rows == 2
    assert len(memory_files_that_fail_to_open_once) == 2


def test_conformed_fills_a_missing_nullable_column_and_refuses_a_missing_required_one():
    schema = pa.schema([pa.field("key", pa.string(), nullable=False), pa.field("note", pa.string())])
    old = pa.table({"extra": [1], "key": ["a"]})  # written before `note` existed; `extra` is not in the schema
    assert sink.conformed(old, schema).to_pylist() == [{"key": "a", "note": None}]
    assert sink.conformed(old, schema).schema == schema
    with pytest.raises(ValueError, match=r"lacks required column\(s\) \['key'\]"):
        sink.conformed(pa.table({"note": ["x"]}), schema)


def test_read_conformed_reads_one_file_in_the_schema(tmp_path):
    fs, root = resolve(str(tmp_path))
    schema = pa.schema([pa.field("key", pa.string(), nullable=False), pa.field("count", pa.int64())])
    pq.write_table(pa.table({"key": ["a", "b"], "count": pa.array([1, 2], pa.int32())}), tmp_path / "part.parquet")
    table = sink.read_conformed(fs, f"{root}/part.parquet", schema)
    assert table.schema == schema and table.column("count").to_pylist() == [1, 2]
