"""The analyst tables' pure logic on a constructed series (tests/tables/series.py), expected rows written out."""

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from meterread.read import sink
from meterread.review.records import corrections_to_table
from meterread.tables import SCHEMAS, build_tables, consumption_daily, readings_current, review_queue
from tests.tables.series import C2, CORRECTION_ROWS, DIGITS, JUNK_URI, at, corrections, readings, uri

D = Decimal
APPROX_17_3 = pytest.approx(17 / 3)


def project(table, columns):
    return [tuple(row[name] for name in columns) for row in table.select(columns).to_pylist()]


def test_readings_current_keeps_each_photos_newest_row():
    current = readings_current(readings())
    assert current.schema == SCHEMAS["readings_current"]
    assert current.schema.names[: len(sink.SCHEMA)] == sink.SCHEMA.names  # the dataset's columns, then the extras
    assert current.column("model_status").equals(current.column("status"))
    assert current.column("model_reading").equals(current.column("reading"))
    assert current.column("corrected_reading").null_count == current.num_rows
    assert project(current, ["image_uri", "run_id", "status", "reading"]) == [
        (uri("A", 1), "r1", "accepted", D("9990")),
        (uri("A", 2), "r1", "accepted", D("9995")),
        (uri("A", 3), "r1", "accepted", D("3")),
        (uri("A", 5), "r1", "flagged", D("18")),
        (uri("A", 6, 8), "r1", "accepted", D("15")),
        (uri("A", 6), "r1", "accepted", D("20")),
        (uri("B", 1), "r1", "accepted", D("500")),
        (uri("B", 2), "r2", "accepted", D("510")),  # the new content, not the misread 900
        (uri("B", 3), "r1", "accepted", D("400")),
        (uri("B", 4), "r2", "flagged", D("9999")),  # the retry supersedes the storage error
        (uri("B", 5), "r1", "accepted", D("410")),
        (JUNK_URI, "r1", "error", None),
    ]


CONSUMPTION_COLUMNS = [
    "meter_id", "capture_date", "captured_at", "reading", "previous_captured_at", "previous_reading",
    "days_covered", "usage", "usage_per_day", "digits", "rollover", "decrease", "gap",
]  # fmt: skip


def test_consumption_daily_marks_rollovers_gaps_and_decreases():
    daily = consumption_daily(readings_current(readings()), DIGITS)
    assert daily.schema == SCHEMAS["consumption_daily"]
    assert daily.column_names == CONSUMPTION_COLUMNS
    assert project(daily, CONSUMPTION_COLUMNS) == [
        ("A", date(2026, 3, 1), at(1), D("9990"), None, None, None, None, None, 4, False, False, False),
        ("A", date(2026, 3, 2), at(2), D("9995"), at(1), D("9990"), 1, D("5"), 5.0, 4, False, False, False),
        ("A", date(2026, 3, 3), at(3), D("3"), at(2), D("9995"), 1, D("8"), 8.0, 4, True, False, False),
        ("A", date(2026, 3, 6), at(6), D("20"), at(3), D("3"), 3, D("17"), APPROX_17_3, 4, False, False, True),
        ("B", date(2026, 3, 1), at(1), D("500"), None, None, None, None, None, None, False, False, False),
        ("B", date(2026, 3, 2), at(2), D("510"), at(1), D("500"), 1, D("10"), 10.0, None, False, False, False),
        ("B", date(2026, 3, 3), at(3), D("400"), at(2), D("510"), 1, None, None, None, False, True, False),
        ("B", date(2026, 3, 5), at(5), D("410"), at(3), D("400"), 2, D("10"), 5.0, None, False, False, True),
    ]  # fmt: skip


REVIEW_COLUMNS = [
    "image_uri", "status", "reason_codes", "reading", "confidence",
    "previous_captured_at", "previous_reading", "next_captured_at", "next_reading",
]  # fmt: skip


def test_review_queue_lists_flagged_and_error_photos_newest_first_with_neighbours():
    queue = review_queue(readings_current(readings()))
    assert queue.schema == SCHEMAS["review_queue"]
    assert project(queue, REVIEW_COLUMNS) == [
        (uri("A", 5), "flagged", ["low_confidence"], D("18"), 0.3, at(3), D("3"), at(6, 8), D("15")),
        (uri("B", 4), "flagged", ["rate_exceeded"], D("9999"), 0.9, at(3), D("400"), at(5), D("410")),
        (JUNK_URI, "error", ["off_layout_key", "not_an_image"], None, None, None, None, None, None),
    ]  # fmt: skip


def test_empty_readings_give_empty_tables_with_their_schemas():
    tables = build_tables(sink.SCHEMA.empty_table(), DIGITS)
    assert {name: (table.num_rows, table.schema) for name, table in tables.items()} == {
        name: (0, schema) for name, schema in SCHEMAS.items()
    }


def test_without_digits_a_rollover_is_a_decrease_not_usage():
    daily = consumption_daily(readings_current(readings()), {}).to_pylist()
    wrapped = next(row for row in daily if row["meter_id"] == "A" and row["capture_date"] == date(2026, 3, 3))
    assert (wrapped["usage"], wrapped["rollover"], wrapped["decrease"]) == (None, False, True)


CORRECTED_COLUMNS = ["image_uri", "status", "reading", "model_status", "model_reading", "corrected_by", "corrected_at"]


def test_a_correction_of_the_current_content_wins_over_the_model():
    current = readings_current(readings(), corrections())
    assert project(current, CORRECTED_COLUMNS) == [
        (uri("A", 1), "accepted", D("9990"), "accepted", D("9990"), None, None),
        (uri("A", 2), "accepted", D("9995"), "accepted", D("9995"), None, None),
        (uri("A", 3), "accepted", D("3"), "accepted", D("3"), None, None),
        (uri("A", 5), "accepted", D("17"), "flagged", D("18"), "ana", at(9, 10)),  # corrected
        (uri("A", 6, 8), "accepted", D("15"), "accepted", D("15"), None, None),
        (uri("A", 6), "accepted", D("20"), "accepted", D("20"), None, None),
        (uri("B", 1), "accepted", D("500"), "accepted", D("500"), None, None),
        (uri("B", 2), "accepted", D("510"), "accepted", D("510"), None, None),  # 505 corrected the old content
        (uri("B", 3), "accepted", D("400"), "accepted", D("400"), None, None),
        (uri("B", 4), "accepted", D("406"), "flagged", D("9999"), "ana", C2),  # the newer of two corrections
        (uri("B", 5), "accepted", D("410"), "accepted", D("410"), None, None),
        (JUNK_URI, "error", None, "error", None, None, None),
    ]  # fmt: skip
    corrected_rows = [row for row in current.to_pylist() if row["corrected_reading"] is not None]
    assert all(row["reading"] == row["corrected_reading"] for row in corrected_rows)
    assert [row["reason_codes"] for row in corrected_rows] == [["low_confidence"], ["rate_exceeded"]]  # the model's


def test_corrected_readings_count_as_accepted_in_consumption_and_leave_the_queue():
    tables = build_tables(readings(), DIGITS, corrections())
    assert project(tables["consumption_daily"], CONSUMPTION_COLUMNS) == [
        ("A", date(2026, 3, 1), at(1), D("9990"), None, None, None, None, None, 4, False, False, False),
        ("A", date(2026, 3, 2), at(2), D("9995"), at(1), D("9990"), 1, D("5"), 5.0, 4, False, False, False),
        ("A", date(2026, 3, 3), at(3), D("3"), at(2), D("9995"), 1, D("8"), 8.0, 4, True, False, False),
        ("A", date(2026, 3, 5), at(5), D("17"), at(3), D("3"), 2, D("14"), 7.0, 4, False, False, True),
        ("A", date(2026, 3, 6), at(6), D("20"), at(5), D("17"), 1, D("3"), 3.0, 4, False, False, False),
        ("B", date(2026, 3, 1), at(1), D("500"), None, None, None, None, None, None, False, False, False),
        ("B", date(2026, 3, 2), at(2), D("510"), at(1), D("500"), 1, D("10"), 10.0, None, False, False, False),
        ("B", date(2026, 3, 3), at(3), D("400"), at(2), D("510"), 1, None, None, None, False, True, False),
        ("B", date(2026, 3, 4), at(4), D("406"), at(3), D("400"), 1, D("6"), 6.0, None, False, False, False),
        ("B", date(2026, 3, 5), at(5), D("410"), at(4), D("406"), 1, D("4"), 4.0, None, False, False, False),
    ]  # fmt: skip
    assert project(tables["review_queue"], ["image_uri", "status"]) == [(JUNK_URI, "error")]


def test_a_correction_of_a_photo_not_in_the_output_is_ignored():
    stray = replace(CORRECTION_ROWS[0], image_uri="file:///bucket/gone.jpg")
    current = readings_current(readings(), corrections_to_table([stray]))
    assert current.column("corrected_reading").null_count == current.num_rows
    assert current.drop_columns(["model_status", "model_reading"]).equals(
        readings_current(readings()).drop_columns(["model_status", "model_reading"])
    )
