"""The meters table is checked whole up front; every problem names file, row and column."""

from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from meterread.config import ConfigError
from meterread.read.meters import MetersTableError, load_meter_profiles
from meterread.read.validate import MeterProfile

HEADER = "meter_id,digits,decimals,max_rate_per_day,meter_type\n"


@pytest.mark.parametrize(
    ("case", "body", "message"),
    [
        ("digits typo", "M1,5,1,100,gas\nM2,1000000,1,100,gas\n", "row 2 (line 3), column digits: 1000000 is outside"),
        ("digits as words", "M1,six,1,100,gas\n", "row 1 (line 2), column digits: 'six' is not a whole number"),
        ("decimals too many", "M1,5,7,100,gas\n", "column decimals: 7 is outside 0..6"),
        ("negative rate", "M1,5,1,-3,gas\n", "column max_rate_per_day: '-3' must be a number above 0"),
        ("rate not a number", "M1,5,1,lots,gas\n", "column max_rate_per_day: 'lots' is not a number"),
        (
            "duplicate meter",
            "M1,5,1,100,gas\nM2,5,1,100,gas\nM1,6,1,100,gas\n",
            "row 3 (line 4), column meter_id: 'M1'",
        ),
        ("empty meter id", " ,5,1,100,gas\n", "row 1 (line 2), column meter_id: empty"),
        ("extra cells", "M1,5,1,100,gas,oops\n", "row 1 (line 2): more cells than the header"),
    ],
)
def test_bad_cells_are_refused_naming_file_row_and_column(tmp_path, case, body, message):
    path = tmp_path / "meters.csv"
    path.write_text(HEADER + body)
    with pytest.raises(MetersTableError) as raised:
        load_meter_profiles(str(path))
    assert message in str(raised.value) and str(path) in str(raised.value), (case, str(raised.value))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("meter,digits\n", "no meter_id column"),
        ("meter_id,digits,max_rate\n", "unknown column(s) max_rate"),
        ("meter_id,digits,digits\n", "repeated column(s) digits"),
    ],
)
def test_bad_columns_are_refused(tmp_path, header, message):
    path = tmp_path / "meters.csv"
    path.write_text(header + "M1,5,5\n")
    with pytest.raises(MetersTableError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_meter_profiles(str(path))


def test_every_problem_is_listed_at_once_and_is_a_config_error(tmp_path):
    path = tmp_path / "meters.csv"
    path.write_text(HEADER + "M1,six,1,100,gas\nM2,5,9,100,gas\n")
    with pytest.raises(ConfigError) as raised:
        load_meter_profiles(str(path))
    assert "column digits" in str(raised.value) and "column decimals" in str(raised.value)


def test_a_good_csv_keeps_leading_zeros_and_blank_cells_mean_unknown(tmp_path):
    path = tmp_path / "meters.csv"
    path.write_text(HEADER + "007,5,1,12.5,gas\n008,,,,\n009,6.0,0,3,\n")
    assert load_meter_profiles(str(path)) == {
        "007": MeterProfile(5, 1, Decimal("12.5"), "gas"),
        "008": MeterProfile(),
        "009": MeterProfile(6, 0, Decimal("3"), None),
    }


def test_parquet_rows_are_checked_the_same_way(tmp_path):
    path = tmp_path / "meters.parquet"
    table = pa.table({"meter_id": ["M1", "M2"], "digits": [5.0, None], "max_rate_per_day": [100.0, 0.0]})
    pq.write_table(table, path)
    with pytest.raises(MetersTableError, match=r"row 2, column max_rate_per_day"):
        load_meter_profiles(str(path))
    pq.write_table(table.set_column(2, "max_rate_per_day", pa.array([100.0, 2.5])), path)
    assert load_meter_profiles(str(path))["M2"] == MeterProfile(max_rate_per_day=Decimal("2.5"))


def test_a_missing_table_is_named(tmp_path):
    with pytest.raises(MetersTableError, match="not found"):
        load_meter_profiles(str(tmp_path / "nope.csv"))
