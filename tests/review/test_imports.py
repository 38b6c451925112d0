"""A reviewed file back into corrections (pure): parsing both formats, one check per rule, every problem named."""

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from meterread.review.imports import check_entries, parse_review_file
from meterread.review.records import CSV, LABEL_STUDIO, Correction, Entry, ReviewImportError
from meterread.tables.logic import newest_rows
from tests.tables.series import at, content, readings, uri

TYPE = "decimal128(24, 6))"
NOW = datetime(2026, 3, 9, 12, 0, tzinfo=timezone.utc)
HEADER = "image_uri,meter_id,captured_at,status,reason_codes,model_reading,confidence,corrected_reading,reviewer\n"
A5, B4, NOPE = uri("A", 5), uri("B", 4), "file:///bucket/nope.jpg"


def current():
    return newest_rows(readings())


def corrections_of(text: str, name: str = "review.csv", reviewer: str | None = None) -> list[Correction]:
    entries, _, source = parse_review_file(text.encode(), name)
    return check_entries(entries, current(), name, source, reviewer, NOW)


def problems_of(text: str, name: str = "review.csv", rows=None) -> tuple[str, ...]:
    entries, _, source = parse_review_file(text.encode(), name)
    with pytest.raises(ReviewImportError) as caught:
        check_entries(entries, rows or current(), name, source, None, NOW)
    return caught.value.problems


def test_reviewed_csv_rows_become_corrections_of_the_current_content():
    text = HEADER + f"{A5},A,,flagged,,18,0.3, 0 017,ana\n{B4},B,,flagged,,9999,0.9,,\n"
    entries, skipped, source = parse_review_file(text.encode(), "review.csv")
    assert (len(entries), skipped, source) == (1, 1, CSV)  # an empty corrected_reading was not reviewed
    assert check_entries(entries, current(), "review.csv", source, None, NOW) == [
        Correction(A5, content("A", 5), "A", at(5), "0017", Decimal("17.000000"), "ana", NOW, CSV)
    ]


def test_reviewer_option_fills_rows_without_one_and_a_comma_is_a_decimal_point():
    (correction,) = corrections_of(HEADER + f'{A5},,,,,,,"17,5",\n', reviewer="lead")
    assert (correction.corrected_text, correction.corrected_reading, correction.corrected_by) == (
        "17.5",
        Decimal("17.500000"),
        "lead",
    )


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([f"{A5},,,,,,,17,ana", f"{NOPE},,,,,,,5,ana"], [f"row 3: photo {NOPE} is not in the output"]),
        ([f"{A5},,,,,,,12a,ana"], ["row 2: value '12a' is not a number (digits with at most one '.' or ',')"]),
        ([f"{A5},,,,,,,-5,ana"], ["row 2: value '-5' is not a number (digits with at most one '.' or ',')"]),
        ([f"{A5},,,,,,,1.1234567,ana"], ["row 2: reading 1.1234567 has more than 6 decimals (output column " + TYPE]),
        (
            [f"{A5},,,,,,,17,ana", f"{B4},,,,,,,406,ana", f"{A5},,,,,,,18,bo"],
            [f"row 2: photo {A5} appears 2 times (row 2, row 4)", f"row 4: photo {A5} appears 2 times (row 2, row 4)"],
        ),
        ([f"{A5},,,,,,,17,"], ["row 2: no reviewer: fill `reviewer` or pass --reviewer"]),
        ([",,,,,,,17,ana"], ["row 2: no image_uri"]),
    ],
    ids=["unknown-photo", "not-a-number", "negative", "too-many-decimals", "duplicate", "no-reviewer", "no-uri"],
)  # fmt: skip
def test_each_bad_csv_row_is_named(lines, expected):
    assert list(problems_of(HEADER + "\n".join(lines) + "\n")) == expected


def test_every_problem_is_collected_not_only_the_first():
    text = HEADER + f"{NOPE},,,,,,,x,\n{A5},,,,,,,17,ana\n"
    assert problems_of(text) == (
        f"row 2: photo {NOPE} is not in the output; value 'x' is not a number (digits with at most one '.' or ','); "
        "no reviewer: fill `reviewer` or pass --reviewer",
    )


def test_a_photo_never_read_cannot_be_corrected():
    rows = {**current(), A5: {**current()[A5], "content_sha256": None}}
    assert problems_of(HEADER + f"{A5},,,,,,,17,ana\n", rows=rows) == (
        f"row 2: photo {A5} was never read (no content hash): correct it once a run has read it",
    )


def test_a_csv_without_the_needed_columns_is_refused():
    with pytest.raises(ReviewImportError, match="row 1: missing column\\(s\\) corrected_reading"):
        parse_review_file(b"image_uri,reading\nx,1\n", "review.csv")


def task(task_id, image_uri, *annotations):
    return {"id": task_id, "data": {"image": image_uri, "image_uri": image_uri}, "annotations": list(annotations)}


def annotation(*texts, who=None, cancelled=False):
    result = [{"from_name": "reading", "to_name": "image", "type": "textarea", "value": {"text": list(texts)}}]
    return {"completed_by": who, "was_cancelled": cancelled, "result": result}


def test_a_label_studio_export_gives_the_last_kept_annotation_of_each_annotated_task():
    export = [
        task(7, A5, annotation("18", who=1), annotation("17", who={"id": 2, "email": "bo@example.com"})),
        task(8, B4, annotation("406", who=3), annotation("", who=4, cancelled=True)),  # the skipped one is ignored
        task(9, uri("B", 5)),  # not annotated: skipped
    ]
    entries, skipped, source = parse_review_file(json.dumps(export).encode(), "export.json")
    assert (skipped, source) == (1, LABEL_STUDIO)
    assert entries == [Entry("task 7", A5, "17", "bo@example.com"), Entry("task 8", B4, "406", "label-studio user 3")]


ONE = annotation("17", who=1)


@pytest.mark.parametrize(
    ("export", "expected"),
    [
        ([task(7, NOPE, annotation("5", who=1))], f"task 7: photo {NOPE} is not in the output"),
        ([task(7, A5, annotation("seventeen", who=1))], "task 7: value 'seventeen' is not a number"),
        ([task(7, A5, ONE), task(8, A5, ONE)], f"task 7: photo {A5} appears 2 times (task 7, task 8)"),
        ([task(7, A5, annotation("17", "18", who=1))], "task 7: 2 readings ['17', '18']: keep one"),
        ([task(7, A5, {"completed_by": 1, "result": []})], "task 7: no `reading` text in the annotation"),
        ([{"id": 7, "data": {"image": A5}, "reading": "17"}], "task 7: no `annotations` list: export the"),
    ],
    ids=["unknown-photo", "not-a-number", "duplicate", "two-readings", "no-reading", "json-min"],
)  # fmt: skip
def test_each_bad_label_studio_task_is_named(export, expected):
    assert problems_of(json.dumps(export), "export.json")[0].startswith(expected)


def test_a_file_that_is_not_json_says_so():
    with pytest.raises(ReviewImportError, match="not JSON"):
        parse_review_file(b"[{", "export.json")
