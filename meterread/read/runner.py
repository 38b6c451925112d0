"""Running a read: one shard end to end (fetch + preprocess in a pool -> batched inference -> rows), the run
manifest, and `run_read`, the whole run without Prefect (the CLI path). The flows call the same steps.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from functools import lru_cache, partial

from meterread.config import ModelSpec, ReadConfig, effective_min_confidence
from meterread.models.base import Prediction, Reader, read_by_pattern, read_padded, read_with_backoff
from meterread.models.patterns import canonical_pattern_text
from meterread.models.registry import load_reader
from meterread.read import lease, sink, state
from meterread.read.fetching import batched, fetch_and_preprocess, skip_unchanged
from meterread.read.history import (
    MeterHistory,
)
from meterread.read.meters import load_meter_profiles
from meterread.read.planning import (
    RunPlan,
    Shard,
    list_source,
    load_history,
    new_run_id,
    plan_run,
    planned_photos,
)
from meterread.read.rows import (
    base_row,
    flag_contradicted,
    image_extras,
    judge,
    meter_profile,
    status_counts,
    with_extras,
    with_reason_codes,
)
from meterread.read.validate import ACCEPTED, ERROR, MeterProfile, Rules
from meterread.storage import (
    resolve,
)
from meterread.streaming import BackgroundWriter, ordered_map
from meterread.training.registry import resolve_spec, run_model_fields

log = logging.getLogger(__name__)


FLAGGED_SAMPLE = 20  # flagged/error rows shown for review per run


@lru_cache(maxsize=2)
def cached_reader(spec: ModelSpec) -> Reader:
    """Load a model once per process (per worker), whatever number of tasks use it."""
    return load_reader(spec)


def fold_state(config: ReadConfig) -> None:
    """Fold the rows written so far into the output's state (under the run's lease). A failure is logged, not
    raised: the rows are safe in the dataset and the next night reads them unfolded."""
    out_fs, out_root = resolve(config.output)
    try:
        state.fold(out_fs, out_root)
    except Exception as error:  # s3fs raises many types for network trouble
        log.warning("could not fold this run's rows into %s/_state (%s): the next run folds them", config.output, error)


@contextmanager
def inference_threads(reader: Reader):
    """On a CPU-only machine, leave one core to preprocessing while the model reads: torch's intra-op threads
    spin while they wait, and on 2 cores that halves end-to-end throughput (see README "Performance").
    Restores torch's setting afterwards; a model on a GPU is left alone."""
    if reader.device.type != "cpu" or (os.cpu_count() or 1) < 2:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, (os.cpu_count() or 1) - 1)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def process_shard(
    config: ReadConfig,
    reader: Reader,
    shard: Shard,
    run_id: str,
    history: MeterHistory,
    profiles: dict[str, MeterProfile] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict]:
    """Every photo of the shard -> exactly one row (accepted, flagged or error), in shard order; a photo whose
    bytes the output already has (`is_unchanged`) -> none.

    Fetch and preprocessing run in a worker pool (OpenCV and I/O release the GIL) at most `prefetch_batches`
    batches ahead of the model, so memory is bounded by the batch size, not by the shard size. On failure the
    queued work is cancelled and the workers joined.
    """
    profiles = profiles or {}
    rules = Rules(min_confidence=effective_min_confidence(config.min_confidence, reader.min_confidence))
    prompt = reader.default_prompt
    rows: list[dict] = []
    accepted: dict[tuple, int] = {}  # (meter_id, captured_at) -> index in `rows` of an accepted reading
    fetched = ordered_map(
        lambda photo: fetch_and_preprocess(photo, reader.image_size, config, reader.layout),
        shard.photos,
        workers=config.preprocess_workers,
        window=config.batch_size * config.prefetch_batches,
    )
    with closing(fetched) as fetched_stream, inference_threads(reader):
        for fetched_batch in batched(fetched_stream, config.batch_size):
            processed_at = datetime.now(timezone.utc)
            batch = [item for item in fetched_batch if not skip_unchanged(item)]
            ready = [item for item in batch if item.image is not None]
            images = [item.image.image for item in ready]
            known = [meter_profile(profiles, item.photo) for item in ready]
            patterns = [register_pattern(reader, profile) for profile in known]
            predictions = read_batch(reader, images, [prompt] * len(ready), config.batch_size, patterns)
            readings = iter(zip(predictions, known, patterns, strict=True))
            extras = iter(image_extras(config, reader, ready) if ready else [])
            for item in batch:
                row = base_row(item, run_id, reader, prompt, processed_at)
                if item.image is None:
                    reasons = [item.error] + ([item.photo.key_problem] if item.photo.key_problem else [])
                    rows.append({**row, "status": ERROR, "reasons": reasons})
                else:
                    prediction, profile, pattern = next(readings)
                    row = {**row, "reading_pattern": applied_pattern(reader, pattern)}
                    judged, contradicted = judge(row, prediction, item.photo, history, profile, rules)
                    flag_contradicted(rows, accepted, judged, contradicted)
                    if judged["status"] == ACCEPTED:
                        accepted[(judged["meter_id"], judged["captured_at"])] = len(rows)
                    rows.append(with_extras(judged, next(extras)))
            if on_batch:
                on_batch(len(fetched_batch))
    return [with_reason_codes(row) for row in rows]


def register_pattern(reader: Reader, profile: MeterProfile | None) -> str | None:
    """The reading pattern of a meter whose register the meters table knows whole (digits and decimals; it wins
    over the run's `model.pattern`), else None (the run's own). None for every meter when decoding is not
    constrained (no pattern applies) or the model is compiled (one input shape all night: a wrong register is
    then a format reason, as without the table's help)."""
    if not profile or not reader.spec.constrained or reader.spec.compile:
        return None
    return profile.reading_pattern()


def applied_pattern(reader: Reader, pattern: str | None) -> str | None:
    """What a reading was held to, for its row's `reading_pattern`: its meter's register (`pattern`), else the
    run's `model.pattern` (written as the table's are: `5.0` -> `5`; a validated spec has one only when decoding is
    constrained), else None (no register: any shape)."""
    return pattern or canonical_pattern_text(reader.spec.pattern)


def read_batch(
    reader: Reader, images: list, prompts: list[str], batch_size: int, patterns: list[str | None] | None = None
) -> list[Prediction]:
    """Read one batch, each image constrained to its meter's register where `patterns` knows it (one model call
    per distinct pattern); a compiled model gets every call padded to the same shape."""
    if not images:
        return []
    read = partial(read_padded, batch_size=batch_size) if reader.spec.compile else read_with_backoff
    return read_by_pattern(reader, images, prompts, patterns or [None] * len(images), read)


def write_rows(config: ReadConfig, rows: list[dict], run_id: str, shard_id: str) -> list[str]:
    fs, root = resolve(config.output)
    return [fs.unstrip_protocol(path) for path in sink.write_shard(fs, root, rows, run_id, shard_id)]


def finish_run(
    config: ReadConfig, plan: RunPlan, reader: Reader, counts: dict[str, int], files: list[str], started_at: datetime
) -> dict:
    """Write and return the run manifest."""
    return write_run_manifest(config, plan, counts, files, started_at, reader.fingerprint)


def write_run_manifest(
    config: ReadConfig,
    plan: RunPlan,
    counts: dict[str, int],
    files: list[str],
    started_at: datetime,
    model_fingerprint: str,
    **extra,
) -> dict:
    """Write `OUTPUT/_manifests/{run_id}.json` (the night's counts, files, model and settings, plus `extra`);
    returns it with its `manifest_uri`. One writer for the single-worker and the fan-out night."""
    manifest = {
        "run_id": plan.run_id,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "source": config.source,
        "output": config.output,
        "listed": plan.listed,
        "already_done": plan.already_done,
        "processed": sum(counts.values()),
        "shards": len(plan.shards),
        "counts": counts,
        "files": sorted(files),
        "model_id": config.model.base,
        "adapter_id": config.model.adapter,
        **run_model_fields(config.model),  # model_reference, model_version: the registry version this run read
        "model_fingerprint": model_fingerprint,
        "config": config.settings(),
        **extra,
    }
    fs, root = resolve(config.output)
    manifest["manifest_uri"] = fs.unstrip_protocol(sink.write_manifest(fs, root, manifest))
    return manifest


def resolve_model(config: ReadConfig) -> ReadConfig:
    """The config with a model reference (`registry://URL`) resolved to the version this run reads
    (`training.registry.resolve_spec`): called once, at the start of a run, so every shard reads that version even
    if another is promoted meanwhile. A fixed model is returned as it is. Raises ModelLoadError naming the registry
    when it has no current model."""
    resolved = resolve_spec(config.model)
    return config if resolved is config.model else config.replace(model=resolved).validate()


def run_read(config: ReadConfig, progress: bool = True) -> dict:
    """The whole read run without Prefect (the CLI path); returns the manifest."""
    from tqdm.auto import tqdm

    config.validate()
    listed, profiles = list_source(config), load_meter_profiles(config.meters_table)  # before any model or write
    config = resolve_model(config)  # registry:// -> the version this run reads
    started_at = datetime.now(timezone.utc)
    reader = cached_reader(config.model)
    run_id = config.run_id or new_run_id(started_at)
    held = take_lease(config, run_id)
    try:
        plan = plan_run(config, reader.fingerprint, run_id, listed)
        history = load_history(config, planned_photos(plan), plan.run_id)
        counts: Counter = Counter()
        total = sum(len(shard.photos) for shard in plan.shards)
        writer = BackgroundWriter(lambda item: write_rows(config, item[1], plan.run_id, item[0]), depth=1)
        with writer, tqdm(total=total, desc="reading photos", unit="photo", disable=not progress) as bar:
            for shard in plan.shards:  # shard k is written while shard k+1 is read
                rows = process_shard(config, reader, shard, plan.run_id, history, profiles, on_batch=bar.update)
                # Still ours (else RunLocked), for another TTL. Shard k-1's write may still be finishing: it began
                # under the lease, and a takeover in between needs this run stalled past its TTL.
                lease.renew(held)
                writer.submit((shard.shard_id, rows))
                counts.update(status_counts(rows))
        files = [path for written in writer.results for path in written]
        totals = {k: counts.get(k, 0) for k in ("accepted", "flagged", "error")}
        manifest = finish_run(config, plan, reader, totals, files, started_at)
        lease.renew(held)  # fold only while this run still holds the output: the state has one writer
        fold_state(config)
        return manifest
    finally:
        lease.release(held)


def take_lease(config: ReadConfig, run_id: str) -> lease.Lease:
    """One writer per output (raises lease.RunLocked naming the holder)."""
    fs, root = resolve(config.output)
    return lease.acquire(fs, root, run_id)
