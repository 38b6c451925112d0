"""What a night needs from the past, kept small and bucketed so a night reads only what it touches.

A night asks two things of the output's history: whether each listed photo was already read by this model (the
ledger), and the accepted readings of each meter it reads (validation). Both are kept as copies of a few columns
of every row, hash-bucketed by the key a night looks them up by:

    OUTPUT/_state/ledger/bucket=NNN/gen-GGGGGGGG.parquet   LEDGER_COLUMNS of every row, by hash(image_uri)
    OUTPUT/_state/meters/bucket=NNN/gen-GGGGGGGG.parquet   HISTORY_COLUMNS of rows with a meter id, by hash(meter_id)
    OUTPUT/_state/folded.parquet                            the dataset files the buckets hold (path, version)

The readings dataset stays the source of truth; the state is a cache of it. A run writes its rows to the dataset
first and folds them into the state at its end, under its lease (`fold`). Dataset files not folded yet (a run that
crashed before folding, files copied in by hand, an output written before this state existed) are read directly
beside the state (`StateView`), so the answer never depends on whether a fold happened; so is a file rewritten
in place since its fold (a shard run that went on after it was given up on), whose folded rows are then left
out. Folding is idempotent: a bucket first drops the rows of the files it folds again. A bucket is replaced by
writing its next generation and then removing older ones; readers use the newest generation only.

Cost of one night: listing OUTPUT's file names, reading `folded.parquet` (one short row per dataset file), and the
buckets its photos and meters hash to (at most one per photo), never the whole history. See docs/performance.md
for the measured numbers (`meterread bench --history`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from fsspec import AbstractFileSystem

from meterread.read import sink
from meterread.read.history import HISTORY_COLUMNS, LEDGER_COLUMNS
from meterread.storage import exists, relative_path, remove, with_retries, write_bytes

STATE_DIR = "_state"
BUCKETS = 256
SOURCE_FILE = "source_file"  # the dataset file (relative to OUTPUT) a state row was copied from
FOLDED_PATH = f"{STATE_DIR}/folded.parquet"
FOLD_CHUNK_FILES = 200  # dataset files folded at once (a shard writes one per capture date; ~1M rows at most)
_GENERATION = re.compile(r"^gen-(\d{8})\.parquet$")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kind:
    """One of the two state tables: its folder, the column it is bucketed and looked up by, its columns."""

    name: str
    key: str
    columns: tuple[str, ...]

    @property
    def schema(self) -> pa.Schema:
        fields = [sink.SCHEMA.field(name) for name in self.columns]
        return pa.schema([field.with_nullable(True) for field in fields] + [pa.field(SOURCE_FILE, pa.string())])


LEDGER = Kind("ledger", "image_uri", tuple(LEDGER_COLUMNS))
METERS = Kind("meters", "meter_id", tuple(HISTORY_COLUMNS))
KINDS = (LEDGER, METERS)


def bucket_of(key: str, buckets: int = BUCKETS) -> int:
    """A key's bucket: stable across processes and Python versions (not `hash()`)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % buckets


def bucket_dir(root: str, kind: Kind, bucket: int) -> str:
    return f"{root}/{STATE_DIR}/{kind.name}/bucket={bucket:03d}"


def generations(fs: AbstractFileSystem, folder: str) -> list[tuple[int, str]]:
    """(generation, path) of a bucket's files, oldest first; none when the bucket was never written."""
    try:
        names = with_retries(lambda: fs.ls(folder, detail=False))
    except FileNotFoundError:
        return []
    found = []
    for path in names:
        match = _GENERATION.match(path.rsplit("/", 1)[-1])
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def read_bucket(fs: AbstractFileSystem, root: str, kind: Kind, bucket: int) -> pa.Table:
    """A bucket's newest generation (empty table with the kind's schema when there is none)."""
    found = generations(fs, bucket_dir(root, kind, bucket))
    return sink.read_conformed(fs, found[-1][1], kind.schema) if found else kind.schema.empty_table()


def read_folded(fs: AbstractFileSystem, root: str) -> dict[str, str]:
    """The dataset files (relative to OUTPUT) the state holds -> the version folded."""
    return sink.read_path_list(fs, f"{root}/{FOLDED_PATH}") or {}


def is_gone(fs: AbstractFileSystem, path: str) -> bool:
    """Whether `path` is absent (FileNotFoundError); any other storage error propagates."""
    try:
        with_retries(lambda: fs.info(path))
    except FileNotFoundError:
        return True
    return False


def keep_keys(table: pa.Table, column: str, keys: Iterable[str]) -> pa.Table:
    return table.filter(pc.is_in(table.column(column), value_set=pa.array(sorted(set(keys)), pa.string())))


class StateView:
    """A read-only look at the state for one night: the buckets plus the dataset files not folded yet.

    `exclude_run`: a run whose own dataset files are left out (a retried shard must not see its own earlier rows as
    history)."""

    def __init__(self, fs: AbstractFileSystem, root: str, exclude_run: str | None = None):
        self.fs, self.root = fs, root
        fs.invalidate_cache(root)
        self.folded = read_folded(fs, root)
        # a state exists, so the output does: never let an `exists` that swallowed an error hide the whole dataset
        listing = sink.dataset_file_versions(fs, root) if self.folded or exists(fs, root) else {}
        names = {path: relative_path(root, path) for path in sorted(listing)}
        self.versions = {names[path]: version for path, version in listing.items()}
        # rewritten in place since their fold: their folded rows are stale, the file itself is read instead
        self.changed = frozenset(
            name
            for name, version in self.versions.items()
            if name in self.folded and not sink.same_version(self.folded[name], version)
        )
        own = f"part-{exclude_run}-" if exclude_run else None
        self.unfolded = [
            path
            for path, name in names.items()
            if (name not in self.folded or name in self.changed)
            and not (own and path.rsplit("/", 1)[-1].startswith(own))
        ]
        self.unfolded_names = frozenset(names[path] for path in self.unfolded)
        # folded once and deleted from the dataset since: not history. Each one is checked on its own, so a listing
        # that came back short (a storage blip) raises instead of making every folded file look deleted.
        gone = set(self.folded) - set(self.versions)
        self.removed = frozenset(name for name in gone if is_gone(fs, f"{root}/{name}"))

    def rows(self, kind: Kind, keys: Iterable[str | None]) -> pa.Table:
        """`kind`'s rows whose key is one of `keys` (None keys ignored): from their buckets (less the rows of
        dataset files removed since they were folded) and from unfolded files."""
        keys = {key for key in keys if key is not None}
        if not keys:
            return kind.schema.empty_table().drop_columns([SOURCE_FILE])
        parts = [
            without_files(  # rows of unfolded files too: a fold that crashed before its files list wrote them
                keep_keys(read_bucket(self.fs, self.root, kind, bucket), kind.key, keys),
                self.removed | self.unfolded_names,
            ).drop_columns([SOURCE_FILE])
            for bucket in sorted({bucket_of(key) for key in keys})
        ]
        if self.unfolded:
            where = ds.field(kind.key).isin(sorted(keys))
            loose = sink.read_output(self.fs, self.root, list(kind.columns), self.unfolded, where)
            parts.append(loose.cast(kind.schema.remove(kind.schema.get_field_index(SOURCE_FILE))))
        return pa.concat_tables(parts)

    def ledger(self, uris: Iterable[str]) -> pa.Table:
        return self.rows(LEDGER, uris)

    def history(self, meter_ids: Iterable[str | None]) -> pa.Table:
        return self.rows(METERS, meter_ids)


def rows_to_fold(fs: AbstractFileSystem, root: str, files: list[str]) -> pa.Table | None:
    """Every column either kind needs from `files`, plus each row's source file (relative to OUTPUT); None when
    there is no file."""
    dataset = sink.open_dataset(fs, root, files)
    if dataset is None:
        return None
    columns = sorted(set(LEDGER.columns) | set(METERS.columns))
    parts = []
    for fragment in dataset.get_fragments():
        table = with_retries(partial(fragment.to_table, columns=columns, schema=dataset.schema))
        parts.append(table.append_column(SOURCE_FILE, pa.array([relative_path(root, fragment.path)] * len(table))))
    return pa.concat_tables(parts)


def without_files(table: pa.Table, files: Iterable[str]) -> pa.Table:
    """`table`'s rows whose source file is not one of `files`. Pure."""
    files = sorted(set(files))
    if not files:
        return table
    return table.filter(pc.invert(pc.is_in(table.column(SOURCE_FILE), value_set=pa.array(files, pa.string()))))


def merge_bucket(existing: pa.Table, new: pa.Table, removed: Iterable[str] = ()) -> pa.Table:
    """The bucket's rows without those of the files folded again or `removed`, then the new rows. Pure."""
    kept = without_files(existing, set(new.column(SOURCE_FILE).to_pylist()) | set(removed))
    return pa.concat_tables([kept, new.cast(existing.schema)])


def write_bucket(
    fs: AbstractFileSystem, root: str, kind: Kind, bucket: int, rows: pa.Table, removed: Iterable[str] = ()
) -> None:
    """Write the bucket's next generation, then remove the older ones (a reader in between reads the newest)."""
    folder = bucket_dir(root, kind, bucket)
    found = generations(fs, folder)
    existing = sink.read_conformed(fs, found[-1][1], kind.schema) if found else kind.schema.empty_table()
    merged = merge_bucket(existing, rows.select(list(kind.schema.names)).cast(kind.schema), removed)
    number = found[-1][0] + 1 if found else 0
    write_bytes(fs, f"{folder}/gen-{number:08d}.parquet", sink.table_to_parquet_bytes(merged))
    for _, path in found:
        remove(fs, path)


def split_by_bucket(table: pa.Table, key: str) -> list[tuple[int, pa.Table]]:
    """(bucket, rows) for every bucket `table`'s `key` column reaches, rows in table order; null keys dropped.
    One sort and zero-copy slices, not one filter per bucket. Pure."""
    buckets = np.array([-1 if value is None else bucket_of(value) for value in table.column(key).to_pylist()])
    order = np.argsort(buckets, kind="stable")
    ordered, sorted_buckets = table.take(pa.array(order, pa.int64())), buckets[order]
    present = [int(bucket) for bucket in np.unique(sorted_buckets) if bucket >= 0]
    starts = np.searchsorted(sorted_buckets, present, side="left")
    ends = np.searchsorted(sorted_buckets, present, side="right")
    return [(bucket, ordered.slice(start, end - start)) for bucket, start, end in zip(present, starts, ends)]


def fold(fs: AbstractFileSystem, root: str, chunk_files: int = FOLD_CHUNK_FILES) -> int:
    """Fold every dataset file not in the state yet into its buckets, and drop the rows of folded files deleted
    from the dataset since; returns the number of rows folded.

    Call under the output's lease (one writer). Files are folded `chunk_files` at a time, so a first fold of a
    large output written before the state existed holds one chunk in memory, not the whole history. Safe to repeat,
    and safe after a crash at any point: each chunk's files list is written after its buckets, and a file folded
    twice replaces its own rows."""
    view = StateView(fs, root)
    folded = dict(view.folded)  # kept here: the files list is written per chunk, read once
    if view.removed or view.changed:  # a changed file's old rows may sit in buckets its new rows never reach
        forget_files(fs, root, view.removed | view.changed)
        folded = {name: version for name, version in folded.items() if name not in view.removed | view.changed}
    folded_rows = 0
    for start in range(0, len(view.unfolded), chunk_files):
        chunk = view.unfolded[start : start + chunk_files]
        table = rows_to_fold(fs, root, chunk)
        if table is None:
            continue
        for kind in KINDS:
            for bucket, rows in split_by_bucket(table, kind.key):
                write_bucket(fs, root, kind, bucket, rows)
        names = [relative_path(root, path) for path in chunk]
        folded.update({name: view.versions[name] for name in names})
        write_folded(fs, root, folded)
        folded_rows += len(table)
        log.info("folded %d rows from %d dataset file(s) into %s", len(table), len(chunk), STATE_DIR)
    return folded_rows


def write_folded(fs: AbstractFileSystem, root: str, versions: dict[str, str]) -> None:
    sink.write_path_list(fs, f"{root}/{FOLDED_PATH}", versions)


def forget_files(fs: AbstractFileSystem, root: str, removed: frozenset[str]) -> None:
    """Drop the rows of `removed` dataset files from every bucket, then from the files list (rare: someone deleted
    or rewrote dataset files; every bucket is rewritten once)."""
    for kind in KINDS:
        for number in range(BUCKETS):
            if generations(fs, bucket_dir(root, kind, number)):
                write_bucket(fs, root, kind, number, kind.schema.empty_table(), removed)
    write_folded(fs, root, {name: version for name, version in read_folded(fs, root).items() if name not in removed})
    log.warning("dropped the state rows of %d dataset file(s) deleted or rewritten in %s", len(removed), root)
