"""Fan-out support: a night's shards as files in the output, read by any worker, gathered by the orchestrator.

    {output}/_runs/{run_id}/shards/{shard_id}.json          the shard's photos (written by the orchestrator)
    {output}/_runs/{run_id}/shards/{shard_id}.result.json   counts, files, worker (written by the shard's reader)

A night's shard files are working files: the night's manifest keeps what they tell. The next night's orchestrator
deletes every run folder but its own (`prune_run_folders`), so `_runs/` holds one night, not the history.

A shard is idempotent: its Parquet files are named by (run_id, shard_id), so reading it again (a retried or rerun
flow) rewrites the same files, never adds rows. Only small JSON travels through Prefect: the shard's URI.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from dataclasses import asdict
from datetime import datetime, timezone

from meterread.config import ReadConfig
from meterread.keys import check_safe_name
from meterread.models.base import Reader
from meterread.read import lease
from meterread.read.meters import load_meter_profiles
from meterread.read.planning import Photo, RunPlan, Shard, load_history
from meterread.read.rows import status_counts
from meterread.read.runner import FLAGGED_SAMPLE, process_shard, write_rows, write_run_manifest
from meterread.storage import relative_path, remove, resolve, with_retries, write_bytes

RUNS_DIR = "_runs"


def shard_path(root: str, run_id: str, shard_id: str, suffix: str = ".json") -> str:
    check_safe_name(run_id, "run_id")
    check_safe_name(shard_id, "shard_id")
    return f"{root}/{RUNS_DIR}/{run_id}/shards/{shard_id}{suffix}"


def photo_to_dict(photo: Photo) -> dict:
    values = asdict(photo)
    values["captured_at"] = photo.captured_at.isoformat() if photo.captured_at else None
    return values


def photo_from_dict(values: dict) -> Photo:
    captured = values.get("captured_at")
    known = tuple(values.get("known_sha256", ()))  # a JSON list; Photo is hashable with a tuple
    return Photo(
        **{**values, "captured_at": datetime.fromisoformat(captured) if captured else None, "known_sha256": known}
    )


def save_shards(config: ReadConfig, plan: RunPlan) -> list[str]:
    """Write every shard's photo list; returns their URIs in plan order."""
    fs, root = resolve(config.output)
    uris = []
    for shard in plan.shards:
        path = shard_path(root, plan.run_id, shard.shard_id)
        body = {"run_id": plan.run_id, "shard_id": shard.shard_id, "photos": [photo_to_dict(p) for p in shard.photos]}
        write_bytes(fs, path, json.dumps(body).encode())
        uris.append(fs.unstrip_protocol(path))
    return uris


def load_shard(uri: str) -> tuple[str, Shard]:
    """(run_id, shard) from a shard file written by `save_shards`."""
    fs, path = resolve(uri)
    body = json.loads(with_retries(lambda: fs.cat_file(path)))
    return body["run_id"], Shard(body["shard_id"], tuple(photo_from_dict(p) for p in body["photos"]))


def worker_name() -> str:
    """Who read a shard: `METERREAD_WORKER_NAME` (set per worker), else the host name."""
    return os.environ.get("METERREAD_WORKER_NAME") or socket.gethostname()


def read_shard_file(config: ReadConfig, reader: Reader, shard_uri: str) -> dict:
    """Read one shard file end to end (history and meters table from the output), write its Parquet files and
    its result file; returns the result. Safe to repeat: the same files are rewritten."""
    run_id, shard = load_shard(shard_uri)
    fs, root = resolve(config.output)
    lease.ensure_held(fs, root, run_id)  # the night is still on: no GPU time for a shard nobody waits for
    history, profiles = load_history(config, shard.photos, run_id), load_meter_profiles(config.meters_table)
    rows = process_shard(config, reader, shard, run_id, history, profiles)
    lease.ensure_held(fs, root, run_id)  # and still holds the output, now that there is something to write
    files = write_rows(config, rows, run_id, shard.shard_id)
    result = {
        "run_id": run_id,
        "shard_id": shard.shard_id,
        "photos": len(shard.photos),
        "rows": len(rows),
        "counts": status_counts(rows),
        "files": files,
        "worker": worker_name(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "flagged": [
            {k: row.get(k) for k in ("image_uri", "reading_text", "confidence", "status", "reasons")}
            for row in rows
            if row["status"] != "accepted"
        ][:FLAGGED_SAMPLE],
    }
    write_bytes(fs, shard_path(root, run_id, shard.shard_id, ".result.json"), json.dumps(result, default=str).encode())
    return result


def load_shard_result(config: ReadConfig, run_id: str, shard_id: str) -> dict | None:
    """A shard's result file, or None when the shard has not finished."""
    fs, root = resolve(config.output)
    path = shard_path(root, run_id, shard_id, ".result.json")
    try:
        return json.loads(with_retries(lambda: fs.cat_file(path)))
    except FileNotFoundError:
        return None


def gather_manifest(
    config: ReadConfig,
    plan: RunPlan,
    results: list[dict],
    model_fingerprint: str,
    started_at: datetime,
    failed_shards: list[str],
) -> dict:
    """The night's manifest from the shard results (written to `_manifests/{run_id}.json`), with the failed shards
    and the number of shards each worker read."""
    counts = {status: sum(r["counts"].get(status, 0) for r in results) for status in ("accepted", "flagged", "error")}
    return write_run_manifest(
        config,
        plan,
        counts,
        [f for r in results for f in r["files"]],
        started_at,
        model_fingerprint,
        failed_shards=sorted(failed_shards),
        workers=dict(sorted(Counter(r["worker"] for r in results).items())),
    )


def prune_run_folders(config: ReadConfig, keep_run_id: str) -> list[str]:
    """Delete every `_runs/{run_id}/` folder but `keep_run_id`'s; returns the run ids removed. Call under the
    output's lease: another night's folder then belongs to a night that ended (or died), whose shard runs were
    cancelled, and a rerun of this night keeps its own."""
    check_safe_name(keep_run_id, "run_id")
    fs, root = resolve(config.output)
    folder = f"{root}/{RUNS_DIR}"
    fs.invalidate_cache(folder)
    try:
        found = with_retries(lambda: fs.ls(folder, detail=False))
    except FileNotFoundError:
        return []
    removed = sorted(relative_path(folder, path) for path in found if relative_path(folder, path) != keep_run_id)
    for run_id in removed:
        remove(fs, f"{folder}/{run_id}", recursive=True)
    return removed
