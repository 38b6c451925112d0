"""The steps of a read run as library functions. The CLI (`run_read`) and the Prefect flow call the same steps.

list_source   list photos, parse keys; a missing or empty source fails the run (unless `allow_empty`)
plan_run      skip what the ledger already holds (transient errors excepted), cut deterministic shards
process_shard fetch + preprocess (bounded worker pool) -> skip unchanged content -> batched inference -> parse ->
              validate -> rows
write_shard   (sink) one Parquet file per shard and capture date, deterministic name (in the background)
finish_run    manifest JSON + status counts
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import lru_cache

from meterread import lease, sink, state
from meterread.config import ReadConfig, effective_min_confidence
from meterread.history import (
    RETRIES_EXHAUSTED,
    STORAGE_ERROR,
    Ledger,
    MeterHistory,
)
from meterread.keys import compile_key_pattern, parse_key
from meterread.meters import load_meter_profiles
from meterread.models.base import ModelSpec, Prediction, Reader, read_padded, read_with_backoff
from meterread.models.decoding import confidence_from_logprobs
from meterread.models.registry import load_reader
from meterread.parse import ParsedReading, parse_reading
from meterread.preprocess import PREPROCESS_VERSION, DecodeError, InputLayout, Preprocessed, preprocess_photo
from meterread.reasons import reason_codes
from meterread.registry import resolve_spec, run_model_fields
from meterread.state import StateView
from meterread.storage import (
    ObjectInfo,
    is_transient,
    list_photos,
    printable_key,
    read_bytes,
    resolve,
    with_retries,
)
from meterread.streaming import BackgroundWriter, ordered_map
from meterread.validate import ACCEPTED, ERROR, FLAGGED, MeterProfile, PriorReading, Rules, validate_reading

log = logging.getLogger(__name__)
FLAGGED_SAMPLE = 20  # flagged/error rows shown for review per run


@dataclass(frozen=True)
class Photo:
    """A listed photo and what its key says. Small and picklable: this, not bytes, travels between tasks."""

    uri: str
    path: str
    key: str
    size: int
    etag: str
    meter_id: str | None
    captured_at: datetime | None
    captured_at_source: str | None
    key_problem: str | None
    known_sha256: tuple[str, ...] = ()  # contents of this URI the output already has a final row for (this model)
    transient_failures: int = 0  # earlier runs whose read of this (uri, etag, model) failed transiently


@dataclass(frozen=True)
class Shard:
    """A bounded unit of work. `shard_id` is a digest of its photos, so the same work writes the same file."""

    shard_id: str
    photos: tuple[Photo, ...]


@dataclass(frozen=True)
class RunPlan:
    run_id: str
    listed: int
    already_done: int
    shards: tuple[Shard, ...]


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


@lru_cache(maxsize=2)
def cached_reader(spec: ModelSpec) -> Reader:
    """Load a model once per process (per worker), whatever number of tasks use it."""
    return load_reader(spec)


def describe_photo(info: ObjectInfo, key_pattern: str) -> Photo:
    """Key convention -> meter id and capture time, falling back to the object's modification time."""
    facts = parse_key(info.key, compile_key_pattern(key_pattern))
    problems = [facts.reason] if facts.reason else []
    if printable_key(info.path) != info.path:
        problems.append("object key is not valid UTF-8; recorded percent-encoded")
    captured_at, source = facts.captured_at, "key"
    if captured_at is None:
        captured_at, source = info.modified_at, "object_mtime" if info.modified_at else None
    problem = "; ".join(problems) or None
    return Photo(info.uri, info.path, info.key, info.size, info.etag, facts.meter_id, captured_at, source, problem)


def shard_bounds(meter_ids: Sequence[str | None], shard_size: int) -> list[tuple[int, int]]:
    """Cut points for shards of about `shard_size` over photos grouped by meter: a shard closes only at a meter
    change once it is full, so one meter's photos always share a shard (shards run in parallel, and each validates
    against the history it sees); a meter with more photos than `shard_size` makes one bigger shard. Photos
    without a meter (None) may be cut anywhere."""
    bounds, start = [], 0
    for index in range(1, len(meter_ids) + 1):
        size = index - start
        at_end = index == len(meter_ids)
        meter_changes = at_end or meter_ids[index] != meter_ids[index - 1] or meter_ids[index] is None
        if at_end or (size >= shard_size and meter_changes):
            bounds.append((start, index))
            start = index
    return bounds


def capture_order(photo: Photo) -> tuple:
    """Sort key: by meter, each meter's photos in capture time (unknown times last, then by key); photos without a
    meter at the end, in key order. Key order is not capture order under every key pattern (a date folder before
    the meter id). Naive times are taken as UTC, so comparisons never raise."""
    at = photo.captured_at if photo.meter_id is not None else None
    moment = datetime.min.replace(tzinfo=timezone.utc) if at is None else at.replace(tzinfo=at.tzinfo or timezone.utc)
    return (photo.meter_id is None, photo.meter_id or "", at is None, moment, photo.key)


def shard_photos(photos: Sequence[Photo], shard_size: int) -> tuple[Shard, ...]:
    """Cut photos into shards named by a digest of their URIs and etags, each meter's photos whole in one shard and
    in capture order (`capture_order`), so they are validated in the order they were taken."""
    photos = sorted(photos, key=capture_order)
    shards = []
    for start, end in shard_bounds([photo.meter_id for photo in photos], shard_size):
        chunk = tuple(photos[start:end])
        digest = hashlib.sha256("\n".join(f"{p.uri}\t{p.etag}" for p in chunk).encode()).hexdigest()[:16]
        shards.append(Shard(digest, chunk))
    return tuple(shards)


class NothingToRead(RuntimeError):
    """SOURCE is missing or lists no photo (a mistyped path or bucket?) and `allow_empty` is off."""


def list_source(config: ReadConfig) -> list[Photo]:
    """Every photo under SOURCE (only under `config.prefixes` and after `config.list_after` when set), described
    by its key. Raises NothingToRead when there is none, unless `config.allow_empty`: a night that finds nothing
    must not look like a quiet success."""
    source_fs, source_root = resolve(config.source)
    listed = list_photos(source_fs, source_root, config.prefixes, config.list_after)
    photos = [describe_photo(info, config.key_pattern) for info in listed]
    if photos or config.allow_empty:
        return photos
    what = "lists no photos (.jpg, .jpeg, .png)" if source_fs.exists(source_root) else "does not exist"
    if source_fs.exists(source_root) and (config.prefixes or config.list_after):
        what += f" under prefixes {list(config.prefixes)} after {config.list_after!r}"
    raise NothingToRead(
        f"source {config.source} {what}: check the path or bucket name; allow_empty (--allow-empty) accepts an "
        "empty night"
    )


def plan_run(
    config: ReadConfig, fingerprint: str, run_id: str | None = None, listed: Sequence[Photo] | None = None
) -> RunPlan:
    """Drop photos of SOURCE (`listed`, else `list_source`) whose (uri, etag, model fingerprint) the output already
    has a final row for, shard the rest. A photo whose earlier reads failed transiently is planned again until it
    failed on more than `transient_retries` runs. Each photo carries what the ledger knows of its URI (contents
    read, transient failures), so a new etag over the same bytes is skipped once fetched (`is_unchanged`)."""
    listed = list_source(config) if listed is None else list(listed)
    ledger = Ledger()
    if not config.reprocess:
        out_fs, out_root = resolve(config.output)
        uris = [photo.uri for photo in listed]
        ledger = Ledger.from_table(with_retries(lambda: StateView(out_fs, out_root).ledger(uris)))
    todo = [
        replace(
            photo,
            known_sha256=tuple(sorted(ledger.contents.get((photo.uri, fingerprint), ()))),
            transient_failures=ledger.transient_failures.get((photo.uri, photo.etag, fingerprint), 0),
        )
        for photo in listed
        if not ledger.is_done((photo.uri, photo.etag, fingerprint), config.transient_retries)
    ]
    if config.limit is not None:
        todo = todo[: config.limit]
    return RunPlan(
        run_id or config.run_id or new_run_id(),
        len(listed),
        len(listed) - len(todo),
        shard_photos(todo, config.shard_size),
    )


def load_history(config: ReadConfig, photos: Iterable[Photo], exclude_run: str | None = None) -> MeterHistory:
    """The accepted readings of the meters of `photos` (from the output's state, `meterread.state`), leaving out
    the rows run `exclude_run` wrote (a retried shard's own) and the earlier readings of `photos` themselves: they
    are read again tonight (a new model, a new version, `--reprocess`), so an old misread of one must not be the
    reference, before or after, of another."""
    photos = list(photos)
    out_fs, out_root = resolve(config.output)
    meter_ids = [photo.meter_id for photo in photos]
    history = MeterHistory.from_table(with_retries(lambda: StateView(out_fs, out_root, exclude_run).history(meter_ids)))
    for photo in photos:
        history.supersede(photo.uri)
    return history


def fold_state(config: ReadConfig) -> None:
    """Fold the rows written so far into the output's state (under the run's lease). A failure is logged, not
    raised: the rows are safe in the dataset and the next night reads them unfolded."""
    out_fs, out_root = resolve(config.output)
    try:
        state.fold(out_fs, out_root)
    except Exception as error:  # s3fs raises many types for network trouble
        log.warning("could not fold this run's rows into %s/_state (%s): the next run folds them", config.output, error)


def planned_photos(plan: RunPlan) -> list[Photo]:
    return [photo for shard in plan.shards for photo in shard.photos]


@dataclass(frozen=True)
class Fetched:
    """A photo after fetch + preprocess: either `image` or `error` (with its machine-readable `codes`)."""

    photo: Photo
    content_sha256: str | None
    image: Preprocessed | None
    error: str | None
    codes: tuple[str, ...] = ()


def fetch_and_preprocess(
    photo: Photo, image_size: int, config: ReadConfig, layout: InputLayout = InputLayout()
) -> Fetched:
    """Read bytes (retried) and preprocess; every failure becomes a reason, never an exception.

    The photo is read by its path on SOURCE's filesystem: its URI is not re-parsed, as fsspec would take `::` in a
    key for a URL chain."""
    try:
        fs, _ = resolve(config.source)
        data = read_bytes(fs, photo.path, attempts=config.storage_attempts)
    except Exception as error:  # noqa: BLE001 - any storage failure becomes the row's reason
        return storage_failure(photo, error, config.transient_retries)
    digest = hashlib.sha256(data).hexdigest()
    try:
        return Fetched(photo, digest, preprocess_photo(data, image_size, config.max_pixels, layout), None)
    except DecodeError as error:
        return Fetched(photo, digest, None, str(error))
    except Exception as error:  # noqa: BLE001 - OpenCV can raise cv2.error on hostile input
        return Fetched(photo, digest, None, f"could not decode image: {type(error).__name__}: {error}")


def storage_failure(photo: Photo, error: Exception, transient_retries: int) -> Fetched:
    """A photo whose bytes could not be read. A transient failure (network, timeout, throttling, permissions) is
    coded STORAGE_ERROR: the ledger does not count it as done, so the next `transient_retries` runs try again; the
    last one allowed adds RETRIES_EXHAUSTED and stays. A missing object is final at once."""
    reason = f"could not read object after retries: {type(error).__name__}: {error}"
    if not is_transient(error):
        return Fetched(photo, None, None, reason)
    attempt = photo.transient_failures + 1
    if attempt > transient_retries:
        note = f"final after {attempt} runs (transient_retries={transient_retries})"
        return Fetched(photo, None, None, f"{STORAGE_ERROR}: {reason}; {note}", (STORAGE_ERROR, RETRIES_EXHAUSTED))
    note = f"the next run tries again (attempt {attempt} of {transient_retries + 1})"
    return Fetched(photo, None, None, f"{STORAGE_ERROR}: {reason}; {note}", (STORAGE_ERROR,))


def is_unchanged(item: Fetched) -> bool:
    """The bytes equal a version of this photo the output already has a row for (a `touch`, a copy over itself):
    new etag, same content, no new reading and no row. Known only after the fetch, so it is skipped before
    inference."""
    return item.content_sha256 is not None and item.content_sha256 in item.photo.known_sha256


def batched(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def base_row(fetched: Fetched, run_id: str, reader: Reader, prompt: str, processed_at: datetime) -> dict:
    photo = fetched.photo
    captured = photo.captured_at or processed_at
    image = fetched.image
    return {
        "run_id": run_id,
        "image_uri": photo.uri,
        "image_etag": photo.etag,
        "image_bytes": photo.size,
        "content_sha256": fetched.content_sha256,
        "meter_id": photo.meter_id,
        "captured_at": photo.captured_at,
        "captured_at_source": photo.captured_at_source,
        "capture_date": captured.astimezone(timezone.utc).date(),
        "model_id": reader.model_id,
        "adapter_id": reader.adapter_id,
        "model_fingerprint": reader.fingerprint,
        "prompt": prompt,
        "preprocess_version": PREPROCESS_VERSION,
        "width": image.width if image else None,
        "height": image.height if image else None,
        "blur": image.blur if image else None,
        "brightness": image.brightness if image else None,
        "processed_at": processed_at,
        "reasons": [],
        "reason_codes": list(fetched.codes),
    }


def judge(
    row: dict,
    prediction: Prediction,
    photo: Photo,
    history: MeterHistory,
    profiles: dict[str, MeterProfile],
    rules: Rules,
) -> tuple[dict, PriorReading | None]:
    """Parse + validate one prediction into the row's reading, confidence, status and reasons. Also returns the
    meter's earlier accepted reading that this accepted one shows to be a misread (then dropped from `history`).

    A value the output's `reading` column cannot hold exactly is unparsable, never rounded or left to fail the
    write."""
    parsed = parse_reading(prediction.text)
    unfit = sink.reading_problem(parsed.value)
    parsed = ParsedReading(None, error=unfit) if unfit else parsed
    confidence = confidence_from_logprobs(list(prediction.token_logprobs))
    profile = profiles.get(photo.meter_id) if photo.meter_id else None
    history.supersede(photo.uri)  # a new version of this photo: its own earlier reading is no reference
    previous, earlier = history.recent(photo.meter_id, photo.captured_at)
    following = history.following(photo.meter_id, photo.captured_at)  # known when this photo arrives late
    verdict = validate_reading(
        parsed,
        confidence,
        photo.captured_at,
        previous,
        profile,
        rules,
        earlier,
        processed_at=row["processed_at"],
        following=following,
    )
    reasons = list(verdict.reasons) + ([photo.key_problem] if photo.key_problem else [])
    status = verdict.status if not (photo.key_problem and verdict.status == ACCEPTED) else FLAGGED
    contradicted = verdict.contradicts if status == ACCEPTED else None
    if status == ACCEPTED and photo.meter_id and photo.captured_at:
        history.add(photo.meter_id, photo.captured_at, parsed.value, photo.uri)
        if contradicted is not None:
            history.discard(photo.meter_id, contradicted)
    return {
        **row,
        "reading_text": prediction.text,
        "reading": parsed.value,
        "confidence": confidence,
        "status": status,
        "reasons": reasons,
        "meter_type": profile.meter_type if profile else None,
    }, contradicted


def flag_contradicted(rows: list[dict], accepted: dict, judged: dict, contradicted: PriorReading | None) -> None:
    """Flag the row of this shard that holds `contradicted` (an accepted jump the later reading `judged` shows to be
    a misread), if it is in `rows`; `accepted` maps (meter_id, captured_at) of accepted rows to their index."""
    index = accepted.pop((judged["meter_id"], contradicted.captured_at), None) if contradicted else None
    if index is None:
        return
    jump = rows[index]
    note = f"jump to {jump['reading']} contradicted by the next reading {judged['reading']}: a misread?"
    rows[index] = {**jump, "status": FLAGGED, "reasons": [*jump["reasons"], note]}


METER_TYPE_PROMPT = "what type of meter is this"


def describe_images(config: ReadConfig, reader: Reader, ready: list[Fetched]) -> list[dict]:
    """Optional second looks at each image: meter type among `config.meter_types` (likelihood ranking) and
    Florence-2 task outputs (`config.tasks`, e.g. where the display is). One dict per image, possibly empty."""
    images = [item.image.image for item in ready]
    described: list[dict] = [{} for _ in ready]
    if config.meter_types:
        for found, (label, probability) in zip(
            described, reader.classify(images, METER_TYPE_PROMPT, config.meter_types)
        ):
            found.update(meter_type=label, meter_type_confidence=probability)
    if config.tasks:
        sizes = [(item.image.width, item.image.height) for item in ready]
        outputs: list[dict] = [{} for _ in ready]
        for task in config.tasks:
            for output, result in zip(outputs, reader.run_task(images, task, sizes)):
                output[task] = result
        for found, output in zip(described, outputs):
            found["task_outputs"] = json.dumps(output, default=float)
    return described


def with_description(row: dict, described: dict) -> dict:
    """Merge image descriptions into a row; a meter type from the meters table wins over the model's guess."""
    if row.get("meter_type"):
        described = {k: v for k, v in described.items() if k not in ("meter_type", "meter_type_confidence")}
    return {**row, **described}


@contextmanager
def inference_threads(reader: Reader):
    """On a CPU-only machine, leave one core to preprocessing while the model reads: torch's intra-op threads
    spin while they wait, and on 2 cores that halves end-to-end throughput (see README "Performance").
    Restores torch's setting afterwards; a model on a GPU is left alone."""
    device = getattr(reader, "device", None)
    if getattr(device, "type", "cpu") != "cpu" or (os.cpu_count() or 1) < 2:
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
            predictions = iter(read_batch(reader, images, [prompt] * len(ready), config.batch_size) if ready else [])
            extras = iter(describe_images(config, reader, ready) if ready else [])
            for item in batch:
                row = base_row(item, run_id, reader, prompt, processed_at)
                if item.image is None:
                    reasons = [item.error] + ([item.photo.key_problem] if item.photo.key_problem else [])
                    rows.append({**row, "status": ERROR, "reasons": reasons})
                else:
                    judged, contradicted = judge(row, next(predictions), item.photo, history, profiles, rules)
                    flag_contradicted(rows, accepted, judged, contradicted)
                    if judged["status"] == ACCEPTED:
                        accepted[(judged["meter_id"], judged["captured_at"])] = len(rows)
                    rows.append(with_description(judged, next(extras)))
            if on_batch:
                on_batch(len(fetched_batch))
    return [with_reason_codes(row) for row in rows]


def with_reason_codes(row: dict) -> dict:
    """The row with `reason_codes` for every reason (`meterread.reasons`), beside codes set where it failed."""
    return {**row, "reason_codes": reason_codes(row["reasons"], row.get("reason_codes") or ())}


def skip_unchanged(item: Fetched) -> bool:
    if is_unchanged(item):
        log.info(
            "%s: same content as its row already read (new etag %s only): not read again",
            item.photo.uri,
            item.photo.etag,
        )
        return True
    return False


def read_batch(reader: Reader, images: list, prompts: list[str], batch_size: int) -> list[Prediction]:
    """Read one batch; a compiled model gets every batch padded to the same shape."""
    spec = getattr(reader, "spec", None)
    if spec is not None and spec.compile:
        return read_padded(reader, images, prompts, batch_size)
    return read_with_backoff(reader, images, prompts)


def write_rows(config: ReadConfig, rows: list[dict], run_id: str, shard_id: str) -> list[str]:
    fs, root = resolve(config.output)
    return [fs.unstrip_protocol(path) for path in sink.write_shard(fs, root, rows, run_id, shard_id)]


def status_counts(rows: Sequence[dict]) -> dict[str, int]:
    counts = Counter(row["status"] for row in rows)
    return {status: counts.get(status, 0) for status in ("accepted", "flagged", "error")}


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
        "config": config.describe(),
        **extra,
    }
    fs, root = resolve(config.output)
    manifest["manifest_uri"] = fs.unstrip_protocol(sink.write_manifest(fs, root, manifest))
    return manifest


def resolve_model(config: ReadConfig) -> ReadConfig:
    """The config with a model reference (`registry://URL`) resolved to the version this run reads
    (`meterread.registry.resolve_spec`): called once, at the start of a run, so every shard reads that version even
    if another is promoted meanwhile. A fixed model is returned as it is. Raises ModelLoadError naming the registry
    when it has no current model."""
    resolved = resolve_spec(config.model)
    return config if resolved is config.model else replace(config, model=resolved).validate()


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
