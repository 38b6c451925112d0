"""Analyst tables over the readings dataset. Pure: Arrow tables in, Arrow tables out, no I/O.

The same logic lives as DuckDB views in `sql/views.sql`; `tests/tables/` checks both give the same rows.

- `readings_current`: one row per photo (`image_uri`), its newest row by (`processed_at`, `run_id`): a new version of
  the photo, a retried storage error or a reprocess supersedes the rows before it (`history.current_rows`). A human
  correction (`meterread review import`) of the content that row read wins: `reading` is the corrected value and
  `status` is `accepted`; `model_status`/`model_reading` keep the model's verdict, `corrected_*` say who and when.
- `consumption_daily`: per meter and capture day, the day's last accepted reading and the usage since the previous
  day with an accepted reading: gaps are marked (`gap`, `days_covered` > 1), never zero-filled; a decrease is
  usage across a rollover when the meter's register width (`digits`) is known (`rollover`), else marked
  (`decrease`) with null usage.
- `review_queue`: every photo whose current row is `flagged` or `error` (a corrected one is `accepted`: it has left
  the queue), with its codes and the meter's accepted readings just before and after it, newest capture first.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import pyarrow as pa

from meterread.read.sink import READING_TYPE, SCHEMA, TIMESTAMP
from meterread.read.validate import ACCEPTED, ERROR, FLAGGED

CORRECTION_COLUMNS = ["corrected_reading", "corrected_by", "corrected_at"]
READINGS_CURRENT_SCHEMA = pa.schema(
    [
        *SCHEMA,
        pa.field("model_status", pa.string()),  # the pipeline's status (`status` is `accepted` once corrected)
        pa.field("model_reading", READING_TYPE),  # the model's parsed reading (`reading` is the corrected one)
        pa.field("corrected_reading", READING_TYPE),  # null: no correction applies to the current content
        pa.field("corrected_by", pa.string()),
        pa.field("corrected_at", TIMESTAMP),
    ]
)
CONSUMPTION_DAILY_SCHEMA = pa.schema(
    [
        pa.field("meter_id", pa.string()),
        pa.field("capture_date", pa.date32()),
        pa.field("captured_at", TIMESTAMP),  # the day's last accepted reading
        pa.field("reading", READING_TYPE),
        pa.field("previous_captured_at", TIMESTAMP),  # the last accepted reading of the previous day with one
        pa.field("previous_reading", READING_TYPE),
        pa.field("days_covered", pa.int32()),  # capture_date - previous capture date; null on a meter's first day
        pa.field("usage", READING_TYPE),  # null on the first day and on a decrease without known digits
        pa.field("usage_per_day", pa.float64()),
        pa.field("digits", pa.int32()),  # register width from the meters table, null when unknown
        pa.field("rollover", pa.bool_()),
        pa.field("decrease", pa.bool_()),
        pa.field("gap", pa.bool_()),
    ]
)
REVIEW_QUEUE_SCHEMA = pa.schema(
    [
        pa.field("image_uri", pa.string()),
        pa.field("meter_id", pa.string()),
        pa.field("captured_at", TIMESTAMP),
        pa.field("capture_date", pa.date32()),
        pa.field("status", pa.string()),
        pa.field("reason_codes", pa.list_(pa.string())),
        pa.field("reasons", pa.list_(pa.string())),
        pa.field("reading_text", pa.string()),
        pa.field("reading", READING_TYPE),  # the model's (parsed) reading
        pa.field("confidence", pa.float64()),
        pa.field("previous_captured_at", TIMESTAMP),  # the meter's accepted reading just before this photo
        pa.field("previous_reading", READING_TYPE),
        pa.field("next_captured_at", TIMESTAMP),  # ... and just after it
        pa.field("next_reading", READING_TYPE),
        pa.field("run_id", pa.string()),
        pa.field("processed_at", TIMESTAMP),
    ]
)
SCHEMAS = {
    "readings_current": READINGS_CURRENT_SCHEMA,
    "consumption_daily": CONSUMPTION_DAILY_SCHEMA,
    "review_queue": REVIEW_QUEUE_SCHEMA,
}


def newest_rows(readings: pa.Table) -> dict[str, dict]:
    """Per `image_uri`, its newest row (SCHEMA columns) by (`processed_at`, `run_id`)."""
    newest: dict[str, dict] = {}
    for row in readings.select(SCHEMA.names).to_pylist():
        best = newest.get(row["image_uri"])
        if best is None or (row["processed_at"], row["run_id"]) > (best["processed_at"], best["run_id"]):
            newest[row["image_uri"]] = row
    return newest


def applied_corrections(newest: Mapping[str, dict], corrections: pa.Table | None) -> dict[str, dict]:
    """Per photo, the correction that applies to its current row: same `content_sha256` (a correction of an older
    version of the photo does not), the newest by (`corrected_at`, `corrected_reading`, `corrected_by`)."""
    applied: dict[str, dict] = {}
    for correction in [] if corrections is None else corrections.to_pylist():
        row = newest.get(correction["image_uri"])
        if row is None or row["content_sha256"] is None or row["content_sha256"] != correction["content_sha256"]:
            continue
        best = applied.get(correction["image_uri"])
        if best is None or correction_order(correction) > correction_order(best):
            applied[correction["image_uri"]] = correction
    return applied


def correction_order(correction: dict) -> tuple:
    return correction["corrected_at"], correction["corrected_reading"], correction["corrected_by"]


def corrected(row: dict, correction: dict | None) -> dict:
    """`row` with the READINGS_CURRENT_SCHEMA extras: the correction's reading and `accepted`, or the model's."""
    out = {**row, "model_status": row["status"], "model_reading": row["reading"]}
    out.update(dict.fromkeys(CORRECTION_COLUMNS))
    if correction is not None:
        out.update({name: correction[name] for name in CORRECTION_COLUMNS})
        out.update(reading=correction["corrected_reading"], status=ACCEPTED)
    return out


def readings_current(readings: pa.Table, corrections: pa.Table | None = None) -> pa.Table:
    """Each photo's newest row by (`processed_at`, `run_id`) with its applied correction (see the module docstring),
    READINGS_CURRENT_SCHEMA, ordered by `image_uri`. `corrections`: `meterread.review.records.CORRECTIONS_SCHEMA`."""
    newest = newest_rows(readings)
    applied = applied_corrections(newest, corrections)
    rows = [corrected(newest[uri], applied.get(uri)) for uri in sorted(newest)]
    return pa.Table.from_pylist(rows, schema=READINGS_CURRENT_SCHEMA)


def accepted_series(current: pa.Table) -> dict[str, list[tuple[datetime, Decimal]]]:
    """Per meter, its accepted (captured_at, reading) pairs sorted by time then reading (current rows only)."""
    series: dict[str, list[tuple[datetime, Decimal]]] = defaultdict(list)
    for row in current.select(["meter_id", "captured_at", "reading", "status"]).to_pylist():
        if row["status"] == ACCEPTED and row["meter_id"] and row["captured_at"] and row["reading"] is not None:
            series[row["meter_id"]].append((row["captured_at"], row["reading"]))
    return {meter: sorted(points) for meter, points in series.items()}


def day_usage(reading: Decimal, previous: Decimal, digits: int | None) -> tuple[Decimal | None, bool, bool]:
    """(usage, rollover, decrease) from the previous day's reading: a decrease wraps past 10**digits when the
    register width is known, else it is a decrease with unknown usage."""
    if reading >= previous:
        return reading - previous, False, False
    if digits is not None:
        return reading + Decimal(10) ** digits - previous, True, False
    return None, False, True


def consumption_daily(current: pa.Table, digits: Mapping[str, int | None] | None = None) -> pa.Table:
    """Per (meter, capture day) with an accepted reading: see the module docstring. `current` is
    `readings_current`; `digits` maps meter ids to register widths (the meters table). Ordered by meter, day."""
    digits = digits or {}
    rows = []
    for meter_id, points in sorted(accepted_series(current).items()):
        last_of_day: dict = {}
        for captured_at, reading in points:  # sorted: the day's last one wins
            last_of_day[captured_at.date()] = (captured_at, reading)
        width = digits.get(meter_id)
        previous = None
        for day in sorted(last_of_day):
            captured_at, reading = last_of_day[day]
            row = {"meter_id": meter_id, "capture_date": day, "captured_at": captured_at, "reading": reading}
            row.update(digits=width, rollover=False, decrease=False, gap=False)
            if previous is not None:
                days = (day - previous[0].date()).days
                usage, rollover, decrease = day_usage(reading, previous[1], width)
                row.update(previous_captured_at=previous[0], previous_reading=previous[1], days_covered=days)
                row.update(usage=usage, rollover=rollover, decrease=decrease, gap=days > 1)
                row["usage_per_day"] = None if usage is None else float(usage) / days
            rows.append(row)
            previous = (captured_at, reading)
    return pa.Table.from_pylist(rows, schema=CONSUMPTION_DAILY_SCHEMA)


def neighbours(
    points: list[tuple[datetime, Decimal]], at: datetime
) -> tuple[tuple[datetime, Decimal] | None, tuple[datetime, Decimal] | None]:
    """The accepted points strictly before and strictly after `at` (nearest in time; at a tie in time, the
    higher reading before and the lower one after)."""
    before = bisect.bisect_left(points, (at, Decimal("-Infinity")))
    after = bisect.bisect_right(points, (at, Decimal("Infinity")))
    return (points[before - 1] if before else None), (points[after] if after < len(points) else None)


def newest_first(entry: dict) -> tuple:
    """Sort key: capture time descending, unknown times last, then `image_uri`."""
    at = entry["captured_at"]
    return (at is None, -at.timestamp() if at else 0.0, entry["image_uri"])


def review_queue(current: pa.Table) -> pa.Table:
    """Current rows that are `flagged` or `error`, newest capture first (unknown times last, then by URI)."""
    series = accepted_series(current)
    rows = []
    for row in current.to_pylist():
        if row["status"] not in (FLAGGED, ERROR):
            continue
        previous = following = None
        if row["meter_id"] in series and row["captured_at"] is not None:
            previous, following = neighbours(series[row["meter_id"]], row["captured_at"])
        entry = {name: row[name] for name in REVIEW_QUEUE_SCHEMA.names if name in row}
        entry["previous_captured_at"], entry["previous_reading"] = previous or (None, None)
        entry["next_captured_at"], entry["next_reading"] = following or (None, None)
        rows.append(entry)
    ordered = sorted(rows, key=newest_first)
    return pa.Table.from_pylist(ordered, schema=REVIEW_QUEUE_SCHEMA)


TABLE_ORDER = {  # how `build_tables` orders each table (a reader of the bucketed files sorts by this)
    "readings_current": [("image_uri", "ascending", "at_end")],
    "consumption_daily": [("meter_id", "ascending", "at_end"), ("capture_date", "ascending", "at_end")],
    "review_queue": [("captured_at", "descending", "at_end"), ("image_uri", "ascending", "at_end")],
}


def in_table_order(name: str, table: pa.Table) -> pa.Table:
    """`table` (a union of buckets of table `name`) in `build_tables`' order; unknown times last."""
    return table.sort_by(TABLE_ORDER[name])


def uncorrected(current: pa.Table) -> pa.Table:
    """`readings_current` rows back to the dataset rows they came from (SCHEMA: the model's status and reading), so
    they can be merged with newer rows and corrected again."""
    restored = current.set_column(
        current.schema.get_field_index("reading"), "reading", current.column("model_reading")
    ).set_column(current.schema.get_field_index("status"), "status", current.column("model_status"))
    return restored.select(SCHEMA.names).cast(SCHEMA)


def build_tables(
    readings: pa.Table, digits: Mapping[str, int | None] | None = None, corrections: pa.Table | None = None
) -> dict[str, pa.Table]:
    """All analyst tables from the readings dataset (`sink.read_output`), meter register widths and the human
    corrections (`meterread.review.store.read_corrections`)."""
    current = readings_current(readings, corrections)
    return {
        "readings_current": current,
        "consumption_daily": consumption_daily(current, digits),
        "review_queue": review_queue(current),
    }
