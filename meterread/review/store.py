"""The review round trip's I/O: the export folder, `OUTPUT/_corrections/`, the dataset folder.

Corrections are append-only: each import writes one new Parquet file,
`OUTPUT/_corrections/corrections-<UTC time>-<random>.parquet`, whole or not at all (`storage.write_bytes`); nothing
is ever rewritten. `_corrections/` is one of meterread's own folders beside the dataset.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from meterread.read import sink
from meterread.review.dataset import annotations_text, plan_splits
from meterread.review.export import LABEL_CONFIG, label_studio_tasks, review_csv
from meterread.review.imports import check_entries, parse_review_file
from meterread.review.records import CORRECTIONS_SCHEMA, Correction, ReviewImportError, corrections_to_table
from meterread.storage import exists, read_bytes, resolve, with_retries, write_bytes
from meterread.tables.logic import applied_corrections, newest_rows, readings_current, review_queue

CORRECTIONS_DIR = "_corrections"
EXPORT_FILES = ("tasks.json", "review.csv", "label_config.xml")


def correction_files(fs: AbstractFileSystem, root: str) -> list[str]:
    """The corrections files under `root/_corrections/`, sorted (none when the folder does not exist)."""
    folder = f"{root}/{CORRECTIONS_DIR}"
    fs.invalidate_cache(folder)
    if not exists(fs, folder):
        return []
    found = with_retries(lambda: fs.find(folder))
    return sorted(path for path in found if path.endswith(".parquet") and not path.rsplit("/", 1)[-1].startswith("."))


def read_corrections(fs: AbstractFileSystem, root: str) -> pa.Table:
    """Every correction under `root/_corrections/` with CORRECTIONS_SCHEMA (empty when there is none)."""
    tables = [pq.read_table(pa.BufferReader(read_bytes(fs, path))) for path in correction_files(fs, root)]
    return pa.concat_tables(
        [table.select(CORRECTIONS_SCHEMA.names).cast(CORRECTIONS_SCHEMA) for table in tables]
        or [CORRECTIONS_SCHEMA.empty_table()]
    )


def write_corrections(fs: AbstractFileSystem, root: str, corrections: Sequence[Correction], now: datetime) -> str:
    """Write one new corrections file (rows ordered by image_uri); returns its path."""
    name = f"corrections-{now.astimezone(timezone.utc):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.parquet"
    path = f"{root}/{CORRECTIONS_DIR}/{name}"
    table = corrections_to_table(sorted(corrections, key=lambda correction: correction.image_uri))
    write_bytes(fs, path, sink.table_to_parquet_bytes(table))
    return path


def export_review(output: str, directory: str, limit: int | None = None) -> dict:
    """Write OUTPUT's review queue (the first `limit` rows, newest capture first) to DIRECTORY as Label Studio tasks
    (`tasks.json`, labelling interface `label_config.xml`) and `review.csv`; returns counts and paths."""
    fs, root = resolve(output)
    current = readings_current(sink.read_output(fs, root), read_corrections(fs, root))
    queue = review_queue(current)
    queue = queue.slice(0, limit) if limit is not None else queue
    out_fs, out = resolve(directory)
    contents = (json.dumps(label_studio_tasks(queue), indent=1, default=str), review_csv(queue), LABEL_CONFIG)
    paths = [f"{out}/{name}" for name in EXPORT_FILES]
    for path, text in zip(paths, contents):
        write_bytes(out_fs, path, text.encode())
    return {"queued": queue.num_rows, "files": [out_fs.unstrip_protocol(path) for path in paths]}


def import_review(output: str, file: str, reviewer: str | None = None, now: datetime | None = None) -> dict:
    """Check FILE (Label Studio JSON export or the review CSV) against OUTPUT's current rows and append its
    corrections to `OUTPUT/_corrections/`. Raises ReviewImportError (every problem, each naming its row) having
    written nothing. Returns counts and the path written (None when nothing was reviewed)."""
    now = now or datetime.now(timezone.utc)
    file_fs, file_path = resolve(file)
    try:
        data = read_bytes(file_fs, file_path)
    except FileNotFoundError as error:
        raise ReviewImportError(file, ["file not found"]) from error
    entries, skipped, source = parse_review_file(data, file)
    fs, root = resolve(output)
    corrections = check_entries(entries, newest_rows(sink.read_output(fs, root)), file, source, reviewer, now)
    path = write_corrections(fs, root, corrections, now) if corrections else None
    written = fs.unstrip_protocol(path) if path else None
    return {"source": source, "corrections": len(corrections), "skipped": skipped, "written": written}


def fetch_photo(image_uri: str, content_sha256: str) -> bytes | str:
    """The photo's bytes, or why they are not the ones corrected (gone, unreadable, changed since)."""
    try:
        fs, path = resolve(image_uri)
        data = read_bytes(fs, path)
    except Exception as error:  # noqa: BLE001 - a photo that cannot be read is skipped and reported
        return f"could not read: {type(error).__name__}: {error}"
    if hashlib.sha256(data).hexdigest() != content_sha256:
        return "content changed since it was corrected"
    return data


def write_review_dataset(output: str, directory: str) -> dict:
    """The corrections that apply to OUTPUT's current rows -> DIRECTORY/{train,valid,test}/ (annotations.jsonl and
    images, one photo in memory at a time) plus `manifest.json`. A photo whose bytes are gone or changed since it was
    corrected is left out and listed under `skipped`. Returns the manifest."""
    fs, root = resolve(output)
    newest = newest_rows(sink.read_output(fs, root))
    applied = applied_corrections(newest, read_corrections(fs, root))
    meter_types = {uri: row["meter_type"] for uri, row in newest.items()}
    out_fs, out = resolve(directory)
    counts, skipped = {}, []
    for name, lines in plan_splits(applied.values(), meter_types).items():
        kept = []
        for line in lines:
            data = fetch_photo(line["source_uri"], line["content_sha256"])
            if isinstance(data, str):
                skipped.append({"image_uri": line["source_uri"], "reason": data})
                continue
            write_bytes(out_fs, f"{out}/{name}/{line['image']}", data)
            kept.append(line)
        write_bytes(out_fs, f"{out}/{name}/annotations.jsonl", annotations_text(kept).encode())
        counts[name] = len(kept)
    manifest = {"output": output, "counts": counts, "skipped": sorted(skipped, key=lambda s: s["image_uri"])}
    write_bytes(out_fs, f"{out}/manifest.json", (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest
