"""The analyst tables' I/O: read the readings dataset, the corrections and the meters table, write
`OUTPUT/_tables/<name>/bucket=<b>/<name>.parquet`.

Every table is split by meter into the state's 256 hash buckets (`meterread.read.state.bucket_of`; photos without a
meter id in `bucket=none`), since all of their logic is per meter. A night then recomputes only the buckets of the
meters it touched (`update_tables`): the bucket's current rows (`readings_current` keeps the model's reading beside a
correction) merged with the night's new rows and corrections give exactly what a full rebuild would.
`_tables/_included.parquet` lists the dataset and correction files the tables hold, so rows a crashed night wrote
are picked up by the next update. `meterread tables OUTPUT` (`refresh_tables`) rebuilds everything.

`_tables/` is one of meterread's own folders (`sink.OWN_DIRS`): dataset readers skip it. Each file is replaced whole
(atomic rename locally, single PUT on S3), so a reader never sees half a bucket. Read a whole table with
`read_table`, DuckDB `read_parquet('OUTPUT/_tables/<name>/*/*.parquet')` or pandas
`read_parquet('OUTPUT/_tables/<name>')`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from meterread.keys import check_safe_name
from meterread.read import sink
from meterread.read.meters import load_meter_profiles
from meterread.read.state import bucket_of
from meterread.review.store import correction_files, read_corrections
from meterread.storage import exists, read_bytes, relative_path, remove, resolve, with_retries, write_bytes
from meterread.tables.logic import SCHEMAS, build_tables, in_table_order, uncorrected

TABLES_DIR = "_tables"
INCLUDED_PATH = f"{TABLES_DIR}/_included.parquet"
NO_METER = "none"  # the bucket of photos without a meter id
VIEWS_SQL = Path(__file__).resolve().parents[2] / "sql" / "views.sql"  # beside the package in a source checkout


def bucket_name(meter_id: str | None) -> str:
    return NO_METER if meter_id is None else f"{bucket_of(meter_id):03d}"


def table_dir(root: str, name: str) -> str:
    return f"{root}/{TABLES_DIR}/{check_safe_name(name, 'table name')}"


def bucket_path(root: str, name: str, bucket: str) -> str:
    return f"{table_dir(root, name)}/bucket={bucket}/{name}.parquet"


def split_by_meter_bucket(table: pa.Table) -> dict[str, pa.Table]:
    """bucket name -> the rows of `table` whose meter hashes there. Pure."""
    buckets = pa.array([bucket_name(meter) for meter in table.column("meter_id").to_pylist()], pa.string())
    return {name: table.filter(pc.equal(buckets, name)) for name in sorted(set(buckets.to_pylist()))}


def write_buckets(fs: AbstractFileSystem, root: str, tables: Mapping[str, pa.Table], buckets: Iterable[str]) -> None:
    """Write `buckets` of each table (rows of meters hashing elsewhere must not be in `tables`); a bucket without
    rows is written empty, so a bucket that lost its last row does not keep stale ones."""
    for name, table in tables.items():
        parts = split_by_meter_bucket(table)
        for bucket in buckets:
            rows = parts.get(bucket, SCHEMAS[name].empty_table())
            write_bytes(fs, bucket_path(root, name, bucket), sink.table_to_parquet_bytes(rows))


def read_bucket(fs: AbstractFileSystem, root: str, name: str, bucket: str) -> pa.Table:
    path = bucket_path(root, name, bucket)
    if not exists(fs, path):
        return SCHEMAS[name].empty_table()
    return read_part(fs, path, name)


def read_part(fs: AbstractFileSystem, path: str, name: str) -> pa.Table:
    """One bucket file of table `name` in the table's schema; a file written before a (nullable) column was added
    reads it as null, as the dataset does."""
    return sink.read_conformed(fs, path, SCHEMAS[name])


def read_table(output: str, name: str) -> pa.Table:
    """A whole analyst table: every bucket, in `build_tables`' order (empty with its schema when never written)."""
    fs, root = resolve(output)
    folder = table_dir(root, name)
    fs.invalidate_cache(folder)
    listed = with_retries(lambda: fs.find(folder)) if exists(fs, folder) else []
    found = sorted(path for path in listed if path.endswith(".parquet"))
    parts = [read_part(fs, path, name) for path in found]
    return in_table_order(name, pa.concat_tables(parts or [SCHEMAS[name].empty_table()]))


def source_files(fs: AbstractFileSystem, root: str) -> tuple[dict[str, str], list[str]]:
    """(dataset file -> version, correction files), relative to `root`: what the tables are built from. Correction
    files are written once under unique names, so they carry no version."""
    fs.invalidate_cache(root)
    listing = sink.dataset_file_versions(fs, root) if exists(fs, root) else {}
    data = {relative_path(root, path): version for path, version in listing.items()}
    return data, [relative_path(root, path) for path in correction_files(fs, root)]


def read_included(fs: AbstractFileSystem, root: str) -> dict[str, str] | None:
    """The dataset and corrections files the tables hold -> version; None when they were never built."""
    return sink.read_path_list(fs, f"{root}/{INCLUDED_PATH}")


def write_included(fs: AbstractFileSystem, root: str, data: dict[str, str], corrections: Iterable[str]) -> None:
    sink.write_path_list(fs, f"{root}/{INCLUDED_PATH}", {**data, **dict.fromkeys(corrections, "")})


def still_holds(included: dict[str, str], data: dict[str, str], corrections: Iterable[str]) -> bool:
    """Whether every file the tables hold is still there as it was read (not deleted, not rewritten). Pure."""
    present = {**dict.fromkeys(corrections, ""), **data}
    return all(name in present and sink.same_version(version, present[name]) for name, version in included.items())


def meter_digits(meters_table: str | None) -> dict[str, int | None]:
    return {meter: profile.digits for meter, profile in load_meter_profiles(meters_table).items()}


def refresh_tables(output: str, meters_table: str | None = None) -> dict[str, pa.Table]:
    """Rebuild every analyst table from OUTPUT, its corrections (and the optional meters table's `digits`): every
    bucket is rewritten and buckets no meter hashes to any more are removed. Returns the tables."""
    digits = meter_digits(meters_table)
    fs, root = resolve(output)
    data, corrections = source_files(fs, root)
    tables = build_tables(sink.read_output(fs, root), digits, read_corrections(fs, root))
    remove(fs, f"{root}/{TABLES_DIR}", recursive=True)
    buckets = {NO_METER} | {bucket_name(meter) for meter in tables["readings_current"].column("meter_id").to_pylist()}
    write_buckets(fs, root, tables, sorted(buckets))
    write_included(fs, root, data, corrections)
    return tables


class TablesNeedRebuild(RuntimeError):
    """The tables were never built, or a file they hold is gone or rewritten: only a whole rebuild fits."""


def update_tables(output: str, meters_table: str | None = None, max_rebuild_files: int | None = None) -> dict[str, int]:
    """Bring the tables up to date with the dataset and corrections files they do not hold yet, recomputing only
    the buckets of the meters those files touch; returns {table: rows written}. When the tables were never built or
    a file they hold was deleted or rewritten since: `refresh_tables`, unless the output holds more than
    `max_rebuild_files` files (TablesNeedRebuild: a night must not read a whole large history; `meterread tables
    OUTPUT` does)."""
    fs, root = resolve(output)
    included = read_included(fs, root)
    data, corrections = source_files(fs, root)
    if included is None or not still_holds(included, data, corrections):
        if max_rebuild_files is not None and len(data) + len(corrections) > max_rebuild_files:
            what = "were never built" if included is None else "hold a file deleted or rewritten since"
            raise TablesNeedRebuild(f"the analyst tables of {output} {what}: run `meterread tables {output}` once")
        return {name: table.num_rows for name, table in refresh_tables(output, meters_table).items()}
    new_data = [f"{root}/{path}" for path in data if path not in included]
    new_corrections = [path for path in corrections if path not in included]
    if not new_data and not new_corrections:
        return {name: 0 for name in SCHEMAS}
    new_rows = sink.read_output(fs, root, files=new_data) if new_data else sink.SCHEMA.empty_table()
    all_corrections = read_corrections(fs, root)
    touched = {bucket_name(meter) for meter in new_rows.column("meter_id").to_pylist()}
    touched |= {bucket_name(meter) for meter in corrected_meters(fs, root, new_corrections)}
    written = dict.fromkeys(SCHEMAS, 0)
    digits = meter_digits(meters_table)
    new_by_bucket = split_by_meter_bucket(new_rows)
    for bucket in sorted(touched):
        old = uncorrected(read_bucket(fs, root, "readings_current", bucket))
        rows = pa.concat_tables([old, new_by_bucket.get(bucket, sink.SCHEMA.empty_table())])
        tables = build_tables(rows, digits, all_corrections)
        write_buckets(fs, root, tables, [bucket])
        for name, table in tables.items():
            written[name] += table.num_rows
    write_included(fs, root, data, corrections)
    return written


def corrected_meters(fs: AbstractFileSystem, root: str, files: Iterable[str]) -> set[str | None]:
    """The meter ids the correction `files` (relative to `root`) correct."""
    meters: set[str | None] = set()
    for path in files:
        table = pq.read_table(pa.BufferReader(read_bytes(fs, f"{root}/{path}")), columns=["meter_id"])
        meters |= set(table.column("meter_id").to_pylist())
    return meters
