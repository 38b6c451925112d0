"""`meterread tables OUTPUT`: tables written under OUTPUT/_tables/<name>/, which dataset readers skip."""

import json
import logging

import pytest
from typer.testing import CliRunner

from meterread.cli import app
from meterread.read import sink
from meterread.review.store import write_corrections
from meterread.storage import resolve
from meterread.tables import SCHEMAS, build_tables
from meterread.tables.store import read_table, refresh_tables
from tests.tables.series import C2, CORRECTION_ROWS, DIGITS, ROWS, corrections, readings

runner = CliRunner()


def write_series(output):
    fs, root = resolve(str(output))
    sink.write_shard(fs, root, [row for row in ROWS if row["run_id"] == "r1"], "r1", "s1")
    sink.write_shard(fs, root, [row for row in ROWS if row["run_id"] == "r2"], "r2", "s1")
    return fs, root


def test_the_command_writes_each_table_and_readers_skip_them(tmp_path, caplog):
    fs, root = write_series(tmp_path / "out")
    meters = tmp_path / "meters.csv"
    meters.write_text("meter_id,digits\nA,4\n")
    result = runner.invoke(app, ["tables", str(tmp_path / "out"), "--meters-table", str(meters)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"readings_current": 12, "consumption_daily": 8, "review_queue": 3}
    expected = build_tables(readings(), DIGITS)
    for name, table in expected.items():
        assert read_table(str(tmp_path / "out"), name).equals(table)
    with caplog.at_level(logging.WARNING):
        assert sink.read_output(fs, root).num_rows == len(ROWS)
    assert "not part of the dataset" not in caplog.text


def test_an_empty_output_gives_empty_tables_with_their_schemas(tmp_path):
    fs, root = resolve(str(tmp_path / "empty"))
    refresh_tables(str(tmp_path / "empty"))
    for name, schema in SCHEMAS.items():
        table = read_table(str(tmp_path / "empty"), name)
        assert (table.num_rows, table.schema) == (0, schema)


def test_a_bad_meters_table_stops_the_command_naming_it(tmp_path):
    write_series(tmp_path / "out")
    result = runner.invoke(app, ["tables", str(tmp_path / "out"), "--meters-table", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1
    assert "nope.csv" in result.output


def test_the_tables_apply_the_corrections_under_the_output(tmp_path):
    fs, root = write_series(tmp_path / "out")
    write_corrections(fs, root, CORRECTION_ROWS[:3], C2)  # two imports: the newest correction of B4 wins
    write_corrections(fs, root, CORRECTION_ROWS[3:], C2)
    written = refresh_tables(str(tmp_path / "out"))
    for name, table in build_tables(readings(), {}, corrections()).items():
        assert written[name].equals(table)
        assert read_table(str(tmp_path / "out"), name).equals(table)


def test_a_night_updates_only_the_buckets_it_touched_and_equals_a_rebuild(tmp_path, monkeypatch):
    """Night 1 is built whole; night 2's rows and a later import of corrections are folded in bucket by bucket, and
    the tables equal a full rebuild over everything."""
    from meterread.tables import store

    output = str(tmp_path / "out")
    fs, root = resolve(output)
    sink.write_shard(fs, root, [row for row in ROWS if row["run_id"] == "r1"], "r1", "s1")
    refresh_tables(output, None)
    sink.write_shard(fs, root, [row for row in ROWS if row["run_id"] == "r2"], "r2", "s1")
    night_meters = {row["meter_id"] for row in ROWS if row["run_id"] == "r2"}
    written_buckets = []
    real_write = store.write_buckets
    monkeypatch.setattr(
        store,
        "write_buckets",
        lambda fs, root, tables, buckets: written_buckets.extend(buckets) or real_write(fs, root, tables, buckets),
    )
    store.update_tables(output)
    assert sorted(written_buckets) == sorted({store.bucket_name(meter) for meter in night_meters})
    for name, table in build_tables(readings(), {}).items():
        assert read_table(output, name).equals(table), name

    write_corrections(fs, root, CORRECTION_ROWS, C2)  # an import between nights
    written_buckets.clear()
    store.update_tables(output)
    assert sorted(written_buckets) == sorted({store.bucket_name(c.meter_id) for c in CORRECTION_ROWS})
    for name, table in build_tables(readings(), {}, corrections()).items():
        assert read_table(output, name).equals(table), name
    written_buckets.clear()
    assert store.update_tables(output) == dict.fromkeys(SCHEMAS, 0) and written_buckets == []  # nothing new


def test_tables_written_before_a_column_was_added_are_read_and_updated(tmp_path):
    """Buckets written before `reading_pattern` existed: read with it null, and a night folds its rows in."""
    import pyarrow.parquet as pq

    output = str(tmp_path / "out")
    fs, root = resolve(output)
    sink.write_shard(fs, root, [row for row in ROWS if row["run_id"] == "r1"], "r1", "s1")
    refresh_tables(output, None)
    for path in fs.find(f"{root}/_tables/readings_current"):
        pq.write_table(pq.read_table(path).drop_columns(["reading_pattern"]), path)  # an older release's bucket
    assert read_table(output, "readings_current").column("reading_pattern").null_count == len(
        {row["image_uri"] for row in ROWS if row["run_id"] == "r1"}
    )
    sink.write_shard(fs, root, [row for row in ROWS if row["run_id"] == "r2"], "r2", "s1")
    from meterread.tables import store

    store.update_tables(output)
    for name, table in build_tables(readings(), {}).items():
        assert read_table(output, name).equals(table), name


def test_tables_are_rebuilt_when_a_dataset_file_they_hold_is_deleted(tmp_path):
    from meterread.tables import store

    output = str(tmp_path / "out")
    fs, root = resolve(output)
    sink.write_shard(fs, root, [row for row in ROWS if row["run_id"] == "r1"], "r1", "s1")
    late = sink.write_shard(fs, root, [row for row in ROWS if row["run_id"] == "r2"], "r2", "s1")
    refresh_tables(output, None)
    for path in late:
        fs.rm(path)
    store.update_tables(output)
    kept = sink.read_output(fs, root)
    assert read_table(output, "readings_current").equals(build_tables(kept, {})["readings_current"])


def test_tables_are_rebuilt_when_a_dataset_file_they_hold_is_rewritten(tmp_path):
    """A shard run that went on after it was given up on rewrites its file in place: the tables follow the file."""
    from meterread.tables import store

    output = str(tmp_path / "out")
    fs, root = resolve(output)
    first = [row for row in ROWS if row["run_id"] == "r1"]
    sink.write_shard(fs, root, first, "r1", "s1")
    store.update_tables(output)
    sink.write_shard(fs, root, first[:1], "r1", "s1")  # the same file names, fewer rows
    store.update_tables(output)
    assert read_table(output, "readings_current").equals(
        build_tables(sink.read_output(fs, root), {})["readings_current"]
    )
    assert read_table(output, "readings_current").num_rows == sink.read_output(fs, root).num_rows < len(first)


def test_the_readme_queries_run_over_the_written_tables(tmp_path):
    import re
    from pathlib import Path

    import duckdb
    import pandas as pd

    output = str(tmp_path / "out")
    write_series(tmp_path / "out")
    refresh_tables(output)
    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    section = readme.split("## Analyst tables", 1)[1].split("\n## ", 1)[0]
    sql = re.search(r"```sql\n(.*?)```", section, re.S).group(1).replace("OUTPUT", output).replace("MTR-1", "A")
    statements = [s for s in re.sub(r"--[^\n]*", "", sql).split(";") if s.strip()]
    counts = [len(duckdb.sql(statement).fetchall()) for statement in statements]
    meter_a = build_tables(readings())["readings_current"].column("meter_id").to_pylist().count("A")
    assert counts == [meter_a, 8, 3]
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1).replace("OUTPUT", output).replace("MTR-1", "A")
    scope = {"pd": pd}
    exec(python, scope)  # noqa: S102 - the README's own example
    assert len(scope["queue"]) == 3 and len(scope["current"]) == counts[0]


def test_a_night_does_not_rebuild_the_tables_of_a_large_output(tmp_path):
    """Tables never built over an output bigger than the night's limit: the update refuses (the night logs it and
    goes on) instead of reading the whole history; `meterread tables` builds them."""
    from meterread.tables import store

    output = str(tmp_path / "out")
    fs, root = write_series(tmp_path / "out")
    with pytest.raises(store.TablesNeedRebuild, match="run `meterread tables"):
        store.update_tables(output, max_rebuild_files=1)
    assert not fs.exists(f"{root}/{store.TABLES_DIR}")
    assert store.update_tables(output, max_rebuild_files=100)["readings_current"] == 12  # a small one: built


def test_the_command_refuses_to_rebuild_beside_a_night(tmp_path):
    """`meterread tables` rebuilds under the output's lease: beside a night that holds it, it stops, writing nothing."""
    from meterread.read import lease

    fs, root = write_series(tmp_path / "out")
    night = lease.acquire(fs, root, "night-7")
    result = runner.invoke(app, ["tables", str(tmp_path / "out")])
    assert result.exit_code == 1 and "locked by run night-7" in result.output
    assert not fs.exists(f"{root}/_tables")
    lease.release(night)
    assert runner.invoke(app, ["tables", str(tmp_path / "out")]).exit_code == 0
    assert not fs.exists(f"{root}/{lease.LEASE_PATH}")  # released after the rebuild


def test_building_and_reading_tables_retry_transient_storage_errors(tmp_path, storage_that_fails_each_call_once):
    write_series(tmp_path / "out")
    refresh_tables(str(tmp_path / "out"))
    refresh_tables(str(tmp_path / "out"))  # the second build removes the first one's tables
    expected = build_tables(readings(), DIGITS)
    assert read_table(str(tmp_path / "out"), "review_queue").num_rows == expected["review_queue"].num_rows
    assert {"rm", "find", "exists"} <= {name for name, _ in storage_that_fails_each_call_once}
