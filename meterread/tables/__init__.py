"""Analyst tables beside the readings dataset: `logic` (pure, Arrow in and out), `store` (read the dataset, write
`OUTPUT/_tables/<name>/<name>.parquet`); the same logic as DuckDB views in `sql/views.sql`. See docs/tables.md."""

from meterread.tables.logic import SCHEMAS, build_tables, consumption_daily, readings_current, review_queue

__all__ = ["SCHEMAS", "build_tables", "consumption_daily", "readings_current", "review_queue"]
