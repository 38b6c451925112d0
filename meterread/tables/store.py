"""The analyst tables' I/O: read the readings dataset, the corrections (`OUTPUT/_corrections/`) and the meters table,
write `OUTPUT/_tables/<name>/`.

`_tables/` is one of meterread's own folders (`sink.OWN_DIRS`): dataset readers skip it. Each table is one Parquet
file, replaced whole (atomic rename locally, single PUT on S3), so a reader never sees half a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
from fsspec import AbstractFileSystem

from meterread import sink
from meterread.meters import load_meter_profiles
from meterread.review.store import read_corrections
from meterread.storage import resolve, write_bytes
from meterread.tables.logic import build_tables

TABLES_DIR = "_tables"
VIEWS_SQL = Path(__file__).resolve().parents[2] / "sql" / "views.sql"  # beside the package in a source checkout


def table_path(root: str, name: str) -> str:
    name = sink.check_safe_name(name, "table name")
    return f"{root}/{TABLES_DIR}/{name}/{name}.parquet"


def write_tables(fs: AbstractFileSystem, root: str, tables: Mapping[str, pa.Table]) -> list[str]:
    """Write each table to `root/_tables/<name>/<name>.parquet`; returns the paths written."""
    written = []
    for name, table in tables.items():
        path = table_path(root, name)
        write_bytes(fs, path, sink.table_to_parquet_bytes(table))
        written.append(path)
    return written


def refresh_tables(output: str, meters_table: str | None = None) -> dict[str, pa.Table]:
    """Recompute every analyst table from OUTPUT, its corrections (and the optional meters table's `digits`) and
    write them."""
    profiles = load_meter_profiles(meters_table)
    fs, root = resolve(output)
    digits = {meter: p.digits for meter, p in profiles.items()}
    tables = build_tables(sink.read_output(fs, root), digits, read_corrections(fs, root))
    write_tables(fs, root, tables)
    return tables
