"""The correction row type and its Arrow schema stay one thing."""

import dataclasses

from meterread.review.records import CORRECTIONS_SCHEMA, Correction, ReviewImportError, corrections_to_table
from tests.tables.series import CORRECTION_ROWS


def test_the_correction_dataclass_is_the_schema():
    assert [field.name for field in dataclasses.fields(Correction)] == CORRECTIONS_SCHEMA.names


def test_corrections_become_a_table_with_exactly_the_schema():
    table = corrections_to_table(CORRECTION_ROWS)
    assert table.schema == CORRECTIONS_SCHEMA
    assert table.to_pylist()[0] == dataclasses.asdict(CORRECTION_ROWS[0])


def test_the_import_error_lists_every_problem_and_says_nothing_was_written():
    error = ReviewImportError("review.csv", ["row 2: value 'x' is not a number", "row 5: photo p is not in the output"])
    assert str(error) == (
        "2 problem(s) in review.csv, nothing written:\n"
        "  row 2: value 'x' is not a number\n"
        "  row 5: photo p is not in the output"
    )
