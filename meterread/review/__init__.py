"""The review round trip: the review queue out to people, their readings back in as corrections, then a dataset.

- `records`: the correction row (`Correction`, `CORRECTIONS_SCHEMA`) and the import error listing every problem.
- `export`: queue rows -> Label Studio tasks (the model's reading prefilled) and a plain CSV. Pure.
- `imports`: a Label Studio JSON export or that CSV -> entries -> corrections checked against the output's current
  rows (unknown photo, not a number, the same photo twice: all reported, nothing written). Pure.
- `dataset`: corrections -> JSONL train/valid/test splits for `meterread train`. Pure.
- `store`: the I/O: `OUTPUT/_corrections/*.parquet` (append-only, one file per import), the export folder, the
  dataset folder.

Corrections feed `readings_current` and `consumption_daily` (`meterread.tables.logic`, `sql/views.sql`).
See docs/tables.md, "Review round trip".
"""
