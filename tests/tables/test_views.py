"""sql/views.sql gives the same rows as meterread.tables.logic: DuckDB over the written Parquet dataset."""

import duckdb
import pyarrow as pa
import pytest

from meterread.read import sink
from meterread.review.records import CORRECTIONS_SCHEMA
from meterread.storage import resolve
from meterread.tables import SCHEMAS, build_tables
from meterread.tables.store import VIEWS_SQL
from tests.tables.series import DIGITS, ROWS, corrections, readings

NO_CORRECTIONS = CORRECTIONS_SCHEMA.empty_table()


def open_views(output, digits, corrections=NO_CORRECTIONS) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with `readings` over OUTPUT, `meters` from `digits`, `corrections` and the views of
    sql/views.sql."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"CREATE VIEW readings AS SELECT * FROM read_parquet('{output}/capture_date=*/*.parquet', "
        "hive_partitioning = true, hive_types = {'capture_date': DATE}, union_by_name = true)"
    )
    meters = pa.table({"meter_id": list(digits), "digits": pa.array(list(digits.values()), pa.int32())})
    con.register("meters", meters)
    con.register("corrections", corrections)
    con.execute(VIEWS_SQL.read_text())
    return con


def view_table(con, name) -> pa.Table:
    schema = SCHEMAS[name]
    result = con.sql(f"SELECT {', '.join(schema.names)} FROM {name}")
    return result.to_arrow_table().cast(schema)


@pytest.fixture
def output(tmp_path):
    fs, root = resolve(str(tmp_path / "out"))
    sink.write_shard(fs, root, [row for row in ROWS if row["run_id"] == "r1"], "r1", "s1")
    sink.write_shard(fs, root, [row for row in ROWS if row["run_id"] == "r2"], "r2", "s1")
    return root


@pytest.mark.parametrize("with_corrections", [False, True], ids=["model-only", "corrected"])
@pytest.mark.parametrize("name", list(SCHEMAS))
def test_views_give_the_same_rows_as_the_python_logic(output, name, with_corrections):
    fixes = corrections() if with_corrections else NO_CORRECTIONS
    expected = build_tables(readings(), DIGITS, fixes)[name]
    got = view_table(open_views(output, DIGITS, fixes), name)
    assert got.num_rows == expected.num_rows > 0
    if name == "consumption_daily":  # float usage_per_day: compared with a tolerance
        for mine, theirs in zip(got.to_pylist(), expected.to_pylist()):
            per_day, expected_per_day = mine.pop("usage_per_day"), theirs.pop("usage_per_day")
            assert mine == theirs
            assert per_day == pytest.approx(expected_per_day)
    else:
        assert got.to_pylist() == expected.to_pylist()


def test_views_without_meter_digits_mark_the_rollover_as_a_decrease(output):
    got = view_table(open_views(output, {}), "consumption_daily")
    expected = build_tables(readings(), {})["consumption_daily"]
    assert got.column("decrease").to_pylist() == expected.column("decrease").to_pylist()
    assert got.column("usage").to_pylist() == expected.column("usage").to_pylist()


def test_the_documented_empty_corrections_relation_works(output):
    """The `none yet` line of sql/views.sql's header, for an output without `_corrections/`."""
    documented = VIEWS_SQL.read_text().split("-- none yet: ", 1)[1].split(";", 1)[0]
    empty = " ".join(line.lstrip("- ") for line in documented.splitlines())
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"CREATE VIEW readings AS SELECT * FROM read_parquet('{output}/capture_date=*/*.parquet', "
        "hive_partitioning = true, hive_types = {'capture_date': DATE}, union_by_name = true)"
    )
    con.execute("CREATE VIEW meters AS SELECT NULL::VARCHAR AS meter_id, NULL::INTEGER AS digits LIMIT 0")
    con.execute(empty)
    con.execute(VIEWS_SQL.read_text())
    assert view_table(con, "readings_current").to_pylist() == build_tables(readings())["readings_current"].to_pylist()
