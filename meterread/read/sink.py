"""Output rows -> Arrow table with a fixed schema -> hive-partitioned Parquet; reading the dataset back.

Layout under OUTPUT:
    capture_date=YYYY-MM-DD/part-{run_id}-{shard_id}.parquet   one file per (shard, date); deterministic names
    _manifests/{run_id}.json                                    run manifest (ignored by dataset readers)
    _tables/{name}/{name}.parquet                               analyst tables (`meterread tables`; ignored too)
    _state/...                                                  what a night needs from the past (`read.state`)
    _corrections/corrections-*.parquet                          reviewers' corrections (`meterread review import`)

Columns are only ever added (nullable), never renamed; `capture_date` lives in the directory name. Anything else
under OUTPUT (a README, `.DS_Store`, a folder of images) is not part of the dataset: readers skip it with a warning.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from meterread.keys import check_safe_name
from meterread.parse import READING_DECIMALS, READING_INTEGER_DIGITS, READING_PRECISION
from meterread.storage import exists, object_etag, read_bytes, relative_path, with_retries, write_bytes

READING_TYPE = pa.decimal128(READING_PRECISION, READING_DECIMALS)  # READING_TYPE_NAME
TIMESTAMP = pa.timestamp("us", tz="UTC")

SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("image_uri", pa.string(), nullable=False),
        pa.field("image_etag", pa.string()),
        pa.field("image_bytes", pa.int64()),
        pa.field("content_sha256", pa.string()),
        pa.field("meter_id", pa.string()),
        pa.field("captured_at", TIMESTAMP),
        pa.field("captured_at_source", pa.string()),
        pa.field("capture_date", pa.date32(), nullable=False),
        pa.field("reading_text", pa.string()),
        pa.field("reading", READING_TYPE),
        pa.field("confidence", pa.float64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reasons", pa.list_(pa.string()), nullable=False),
        pa.field("meter_type", pa.string()),
        pa.field("model_id", pa.string()),
        pa.field("adapter_id", pa.string()),
        pa.field("model_fingerprint", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("preprocess_version", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("blur", pa.float64()),
        pa.field("brightness", pa.float64()),
        pa.field("processed_at", TIMESTAMP, nullable=False),
        pa.field("meter_type_confidence", pa.float64()),
        pa.field("task_outputs", pa.string()),
        pa.field("reason_codes", pa.list_(pa.string())),  # machine-readable codes, e.g. storage_error
        pa.field("reading_pattern", pa.string()),  # the register a reading was held to, e.g. 6.1; null: free
    ]
)
PARTITION_COLUMN = "capture_date"
FILE_SCHEMA = pa.schema([f for f in SCHEMA if f.name != PARTITION_COLUMN])
PARTITIONING = ds.partitioning(pa.schema([SCHEMA.field(PARTITION_COLUMN)]), flavor="hive")
MANIFEST_DIR = "_manifests"
# meterread's own folders beside the dataset
OWN_DIRS = (MANIFEST_DIR, "_leases", "_runs", "_tables", "_state", "_corrections")
log = logging.getLogger(__name__)
_DATA_FILE = re.compile(rf"^{PARTITION_COLUMN}=\d{{4}}-\d{{2}}-\d{{2}}/[^./][^/]*\.parquet$")


class RowError(ValueError):
    """A row that does not fit the dataset's columns: an unknown (misspelt) key or a missing required one."""


@dataclass(frozen=True)
class ReadingRow:
    """One row of the readings dataset: exactly SCHEMA's columns (a test holds the two equal). The non-nullable
    columns are required; every other field defaults to null."""

    run_id: str
    image_uri: str
    capture_date: date
    status: str
    reasons: Sequence[str]
    processed_at: datetime
    image_etag: str | None = None
    image_bytes: int | None = None
    content_sha256: str | None = None
    meter_id: str | None = None
    captured_at: datetime | None = None
    captured_at_source: str | None = None
    reading_text: str | None = None
    reading: Decimal | None = None
    confidence: float | None = None
    meter_type: str | None = None
    model_id: str | None = None
    adapter_id: str | None = None
    model_fingerprint: str | None = None
    prompt: str | None = None
    preprocess_version: str | None = None
    width: int | None = None
    height: int | None = None
    blur: float | None = None
    brightness: float | None = None
    meter_type_confidence: float | None = None
    task_outputs: str | None = None
    reason_codes: Sequence[str] | None = None
    reading_pattern: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping) -> ReadingRow:
        """The row of a dict keyed by column names; RowError names unknown and missing keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        unknown, missing = sorted(set(values) - names), sorted(required - set(values))
        if unknown or missing:
            where = values.get("image_uri", "?")
            raise RowError(f"row for {where}: unknown column(s) {unknown}, missing required column(s) {missing}")
        return cls(**values)


def reading_problem(value: Decimal | None) -> str | None:
    """Why `value` cannot be stored exactly in the `reading` column, or None when it can (or is None)."""
    if value is None:
        return None
    if not value.is_finite():
        return f"reading {value} is not a finite number"
    if value and abs(value).adjusted() >= READING_INTEGER_DIGITS:
        return f"reading {value} has more than {READING_INTEGER_DIGITS} integer digits (output column {READING_TYPE})"
    if value != quantize(value):
        return f"reading {value} has more than {READING_DECIMALS} decimals (output column {READING_TYPE})"
    return None


def quantize(value: Decimal | None) -> Decimal | None:
    """Fit a reading into the column's scale (6 decimals)."""
    return None if value is None else value.quantize(Decimal("0.000001"))


def rows_to_table(rows: Iterable[ReadingRow | Mapping]) -> pa.Table:
    """Rows (ReadingRow, or dicts keyed by SCHEMA names: `ReadingRow.from_mapping`, so a misspelt or missing
    column raises RowError instead of becoming null) -> table with exactly SCHEMA."""
    typed = [row if isinstance(row, ReadingRow) else ReadingRow.from_mapping(row) for row in rows]
    columns = {}
    for field in SCHEMA:
        values = [getattr(row, field.name) for row in typed]
        if field.name == "reading":
            values = [quantize(value) for value in values]
        columns[field.name] = pa.array(values, type=field.type)
    return pa.table(columns, schema=SCHEMA)


def part_name(run_id: str, shard_id: str) -> str:
    return f"part-{check_safe_name(run_id, 'run_id')}-{check_safe_name(shard_id, 'shard_id')}.parquet"


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def write_shard(fs: AbstractFileSystem, root: str, rows: list[Mapping], run_id: str, shard_id: str) -> list[str]:
    """Write one shard's rows, one file per capture date; returns the paths written.

    Names depend only on (date, run_id, shard_id): writing the same shard again replaces its files.
    """
    by_date: dict[date, list[Mapping]] = defaultdict(list)
    for row in rows:
        by_date[row["capture_date"]].append(row)
    written = []
    for day in sorted(by_date):
        table = rows_to_table(by_date[day]).drop_columns([PARTITION_COLUMN])
        path = f"{root}/{PARTITION_COLUMN}={day.isoformat()}/{part_name(run_id, shard_id)}"
        write_bytes(fs, path, table_to_parquet_bytes(table))
        written.append(path)
    return written


def dataset_files(fs: AbstractFileSystem, root: str) -> list[str]:
    """The dataset's Parquet files under `root` (`capture_date=YYYY-MM-DD/*.parquet`), sorted."""
    return sorted(dataset_file_versions(fs, root))


def dataset_file_versions(fs: AbstractFileSystem, root: str) -> dict[str, str]:
    """The dataset's Parquet files under `root` -> their version (S3 ETag, else size-mtime: `object_etag`), so a
    file rewritten in place is told from the one that was read. Anything else is skipped with one warning naming
    it (meterread's own folders, `OWN_DIRS`, and in-flight `.*.tmp` files silently): a stray file in OUTPUT must
    not fail a night."""
    found = with_retries(lambda: fs.find(root, detail=True))
    files, strays = {}, []
    for path, info in sorted(found.items()):
        relative = relative_path(root, path)
        name = relative.rsplit("/", 1)[-1]
        if _DATA_FILE.match(relative):
            files[path] = object_etag(info)
        elif not (relative.split("/", 1)[0] in OWN_DIRS or (name.startswith(".") and name.endswith(".tmp"))):
            strays.append(relative)
    if strays:
        log.warning(
            "ignoring %d file(s) in %s that are not part of the dataset: %s%s",
            len(strays),
            fs.unstrip_protocol(root),
            ", ".join(strays[:5]),
            ", ..." if len(strays) > 5 else "",
        )
    return files


def open_dataset(fs: AbstractFileSystem, root: str, files: list[str] | None = None) -> ds.Dataset | None:
    """The dataset under `root` (or only `files` of it) with SCHEMA and its partition column; None when empty."""
    if files is None:
        fs.invalidate_cache(root)
        if not exists(fs, root):
            return None
        files = dataset_files(fs, root)
    if not files:
        return None
    return ds.dataset(
        files,
        filesystem=fs,
        format="parquet",
        schema=SCHEMA,
        partitioning=PARTITIONING,
        partition_base_dir=root,
        exclude_invalid_files=False,
    )


def read_output(
    fs: AbstractFileSystem,
    root: str,
    columns: list[str] | None = None,
    files: list[str] | None = None,
    where: ds.Expression | None = None,
) -> pa.Table:
    """The whole output dataset (or `columns` of it, or only `files` of it, rows matching `where`) with SCHEMA;
    empty table when nothing was written. Files written before a column was added read it as null. The read is
    retried on transient storage errors (Arrow opens the files through fsspec)."""
    dataset = open_dataset(fs, root, files)
    if dataset is None:
        empty = SCHEMA.empty_table()
        return empty.select(columns) if columns else empty
    return with_retries(lambda: dataset.to_table(columns=columns, filter=where))


def conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` cast to `schema`, nulls for the nullable columns it lacks (a file written before they were added).
    Raises ValueError naming a missing column that is not nullable."""
    missing = [field for field in schema if field.name not in table.column_names]
    required = [field.name for field in missing if not field.nullable]
    if required:
        raise ValueError(f"table lacks required column(s) {required}")
    for field in missing:
        table = table.append_column(field.name, pa.nulls(table.num_rows, field.type))
    return table.select(schema.names).cast(schema)


def read_conformed(fs: AbstractFileSystem, path: str, schema: pa.Schema) -> pa.Table:
    """One Parquet file read whole and `conformed` to `schema`."""
    return conformed(pq.read_table(pa.BufferReader(read_bytes(fs, path))), schema)


def read_path_list(fs: AbstractFileSystem, path: str) -> dict[str, str] | None:
    """path -> version of a `write_path_list` file (version "" where none was recorded: a file written before
    versions were); None when there is no such file."""
    if not exists(fs, path):
        return None
    table = pq.read_table(pa.BufferReader(read_bytes(fs, path)))
    paths = table.column("path").to_pylist()
    versions = table.column("version").to_pylist() if "version" in table.column_names else [""] * len(paths)
    return dict(zip(paths, versions))


def write_path_list(fs: AbstractFileSystem, path: str, versions: Mapping[str, str]) -> None:
    """Write path -> version as a two-column (`path`, `version`) Parquet file, sorted, whole or not at all."""
    paths = sorted(versions)
    columns = {"path": pa.array(paths, pa.string()), "version": pa.array([versions[p] for p in paths], pa.string())}
    write_bytes(fs, path, table_to_parquet_bytes(pa.table(columns)))


def same_version(recorded: str, current: str) -> bool:
    """Whether a file listed with version `recorded` is still the one listed now (an unrecorded version, "",
    matches any: lists written before versions were are trusted as they are). Pure."""
    return not recorded or recorded == current


def write_manifest(fs: AbstractFileSystem, root: str, manifest: Mapping) -> str:
    """Write `_manifests/{run_id}.json`; returns its path."""
    path = f"{root}/{MANIFEST_DIR}/{check_safe_name(manifest['run_id'], 'run_id')}.json"
    write_bytes(fs, path, json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())
    return path
