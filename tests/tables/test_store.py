"""`meterread tables OUTPUT`: tables written under OUTPUT/_tables/<name>/, which dataset readers skip."""

import json
import logging

import pyarrow.parquet as pq
from typer.testing import CliRunner

from meterread import sink
from meterread.cli import app
from meterread.review.store import write_corrections
from meterread.storage import resolve
from meterread.tables import SCHEMAS, build_tables
from meterread.tables.store import refresh_tables, table_path
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
        assert pq.read_table(table_path(root, name)).equals(table)
    with caplog.at_level(logging.WARNING):
        assert sink.read_output(fs, root).num_rows == len(ROWS)
    assert "not part of the dataset" not in caplog.text


def test_an_empty_output_gives_empty_tables_with_their_schemas(tmp_path):
    fs, root = resolve(str(tmp_path / "empty"))
    refresh_tables(str(tmp_path / "empty"))
    for name, schema in SCHEMAS.items():
        table = pq.read_table(table_path(root, name))
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
        assert pq.read_table(table_path(root, name)).equals(table)
