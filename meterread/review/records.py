"""The correction row: one person's reading of one photo's content, as stored under `OUTPUT/_corrections/`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import pyarrow as pa

from meterread.read.sink import READING_TYPE, TIMESTAMP

LABEL_STUDIO, CSV = "label-studio", "csv"
SOURCES = (LABEL_STUDIO, CSV)
CORRECTIONS_SCHEMA = pa.schema(
    [
        pa.field("image_uri", pa.string(), nullable=False),
        pa.field("content_sha256", pa.string(), nullable=False),  # the content the reviewer saw: the current row's
        pa.field("meter_id", pa.string()),
        pa.field("captured_at", TIMESTAMP),
        pa.field("corrected_text", pa.string(), nullable=False),  # as typed, spaces removed, `,` -> `.`: the label
        pa.field("corrected_reading", READING_TYPE, nullable=False),
        pa.field("corrected_by", pa.string(), nullable=False),
        pa.field("corrected_at", TIMESTAMP, nullable=False),  # when the import wrote it (UTC)
        pa.field("source", pa.string(), nullable=False),  # one of SOURCES
    ]
)


@dataclass(frozen=True)
class Correction:
    """One row of CORRECTIONS_SCHEMA (a test holds the two equal)."""

    image_uri: str
    content_sha256: str
    meter_id: str | None
    captured_at: datetime | None
    corrected_text: str
    corrected_reading: Decimal
    corrected_by: str
    corrected_at: datetime
    source: str


@dataclass(frozen=True)
class Entry:
    """One reviewed row of an import file, not yet checked. `where` names it for errors (`row 3`, `task 17`);
    `problem` is what parsing already found wrong with it."""

    where: str
    image_uri: str | None
    text: str | None
    reviewer: str | None = None
    problem: str | None = None


class ReviewImportError(ValueError):
    """An import file with problems; `problems` each name their row. Nothing was written."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.problems = tuple(problems)
        listed = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in {source}, nothing written:\n{listed}")


def corrections_to_table(corrections: Iterable[Correction]) -> pa.Table:
    """Corrections -> a table with exactly CORRECTIONS_SCHEMA."""
    rows = [dataclasses.asdict(correction) for correction in corrections]
    return pa.Table.from_pylist(rows, schema=CORRECTIONS_SCHEMA)
