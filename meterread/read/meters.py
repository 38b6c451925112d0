"""The optional meters table (CSV or Parquet), one row per meter -> MeterProfile, checked whole before any photo
is read.

Columns: `meter_id` (required, unique), `digits` (1-18), `decimals` (0-6), `max_rate_per_day` (> 0, at most
1e18), `meter_type` (text); empty cells mean unknown. The limits are the output's `reading` column,
decimal128(24, 6). A bad table raises MetersTableError naming the file, row and column of every problem.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation

from meterread.config import ConfigError
from meterread.parse import READING_DECIMALS, READING_INTEGER_DIGITS
from meterread.read.validate import MeterProfile
from meterread.storage import resolve, with_retries

COLUMNS = ("meter_id", "digits", "decimals", "max_rate_per_day", "meter_type")
MAX_RATE = Decimal(10) ** READING_INTEGER_DIGITS
MAX_SHOWN = 20  # problems listed in one error


class MetersTableError(ConfigError):
    """A meters table that cannot be used; the message names file, row and column."""


def is_blank(value: object) -> bool:
    return (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, float) and math.isnan(value))
    )


def parse_whole(value: object, low: int, high: int) -> int:
    """A whole number within [low, high] from a cell (int, integral float or text like `5` / `5.0`); ValueError
    says why."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise ValueError(f"{value!r} is not a whole number")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a whole number") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number")
    if not low <= number <= high:
        raise ValueError(f"{value} is outside {low}..{high}")
    return int(number)


def parse_rate(value: object) -> Decimal:
    """A positive, finite usage per day (at most MAX_RATE) from a cell; ValueError says why."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise ValueError(f"{value!r} is not a number")
    try:
        rate = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not rate.is_finite() or not 0 < rate <= MAX_RATE:
        raise ValueError(f"{value!r} must be a number above 0 and at most {MAX_RATE:.0e}")
    return rate


def parse_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    return value.strip()


PARSERS = {
    "digits": lambda value: parse_whole(value, 1, READING_INTEGER_DIGITS),
    "decimals": lambda value: parse_whole(value, 0, READING_DECIMALS),
    "max_rate_per_day": parse_rate,
    "meter_type": parse_text,
}


def check_columns(columns: Iterable[str | None], where: str) -> list[str]:
    """Problems with a table's header: no meter_id, unknown or repeated column names."""
    columns = list(columns)
    problems = [] if "meter_id" in columns else [f"{where}: no meter_id column"]
    unknown = sorted({str(name) for name in columns if name not in COLUMNS})
    if unknown:
        problems.append(f"{where}: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}")
    repeated = sorted({name for name in columns if name is not None and columns.count(name) > 1})
    if repeated:
        problems.append(f"{where}: repeated column(s) {', '.join(repeated)}")
    return problems


def profile_from_row(row: Mapping, label: str) -> tuple[MeterProfile, list[str]]:
    """One table row -> (profile, problems naming `label` and the column); bad cells are left unknown."""
    values, problems = {}, []
    if row.get(None):  # csv.DictReader puts cells beyond the header under None
        problems.append(f"{label}: more cells than the header has columns")
    for name, parse in PARSERS.items():
        cell = row.get(name)
        if is_blank(cell):
            continue
        try:
            values[name] = parse(cell)
        except ValueError as error:
            problems.append(f"{label}, column {name}: {error}")
    return MeterProfile(**values), problems


def profiles_from_rows(
    rows: Iterable[Mapping], where: str, label_row: Callable[[int], str] = lambda index: f"row {index + 1}"
) -> dict[str, MeterProfile]:
    """Table rows -> {meter_id: MeterProfile}. Pure. Raises MetersTableError listing every bad cell, missing
    meter_id and repeated meter_id (with the rows that share it), each prefixed by `where` and `label_row(index)`."""
    profiles: dict[str, MeterProfile] = {}
    first_seen: dict[str, str] = {}
    problems: list[str] = []
    for index, row in enumerate(rows):
        label = f"{where}: {label_row(index)}"
        meter_id = row.get("meter_id")
        profile, row_problems = profile_from_row(row, label)
        problems += row_problems
        if is_blank(meter_id):
            problems.append(f"{label}, column meter_id: empty")
            continue
        meter_id = str(meter_id).strip()
        if meter_id in first_seen:
            problems.append(f"{label}, column meter_id: {meter_id!r} repeats {first_seen[meter_id]}")
            continue
        first_seen[meter_id] = label_row(index)
        profiles[meter_id] = profile
    if problems:
        more = f"\n  ... and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
        raise MetersTableError("invalid meters table:\n  - " + "\n  - ".join(problems[:MAX_SHOWN]) + more)
    return profiles


def read_rows(data: bytes, path: str, where: str) -> tuple[list[str], list[dict], Callable[[int], str]]:
    """(columns, rows, row labeller) of a CSV (UTF-8, every cell text) or Parquet file's bytes."""
    if path.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data))
        except pa.ArrowException as error:
            raise MetersTableError(f"{where}: not a readable Parquet file ({error})") from None
        return table.column_names, table.to_pylist(), lambda index: f"row {index + 1}"
    try:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
        rows, lines = [], []
        for row in reader:
            rows.append(row)
            lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as error:
        raise MetersTableError(f"{where}: not a readable UTF-8 CSV file ({error})") from None
    return list(reader.fieldnames or []), rows, lambda index: f"row {index + 1} (line {lines[index]})"


def load_meter_profiles(url: str | None) -> dict[str, MeterProfile]:
    """The meters table at `url` (CSV, or Parquet by its `.parquet` suffix) -> {meter_id: MeterProfile}; {} when
    there is none. Raises MetersTableError naming file, row and column when the table is missing or bad."""
    if not url:
        return {}
    fs, path = resolve(url)
    try:
        data = with_retries(lambda: fs.cat_file(path))
    except FileNotFoundError:
        raise MetersTableError(f"meters table {url} not found") from None
    columns, rows, label_row = read_rows(data, path, url)
    problems = check_columns(columns, url)
    if problems:
        raise MetersTableError("invalid meters table:\n  - " + "\n  - ".join(problems))
    return profiles_from_rows(rows, url, label_row)
