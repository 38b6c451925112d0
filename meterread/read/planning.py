"""Planning a read run: list SOURCE, skip what the ledger already holds, cut shards, load the meters' history.

list_source   list photos, parse keys; a missing or empty source fails the run (unless `allow_empty`)
plan_run      skip what the ledger already holds (transient errors excepted), cut deterministic shards
load_history  the accepted readings the night validates against (from the output's state)
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from meterread.config import ReadConfig
from meterread.keys import compile_key_pattern, parse_key
from meterread.read.history import (
    Ledger,
    MeterHistory,
)
from meterread.read.state import StateView
from meterread.storage import (
    ObjectInfo,
    list_photos,
    printable_key,
    resolve,
)


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


def photo_from_object(info: ObjectInfo, key_pattern: str) -> Photo:
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
    photos = [photo_from_object(info, config.key_pattern) for info in listed]
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
        ledger = Ledger.from_table(StateView(out_fs, out_root).ledger(uris))  # each storage call in it retries
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
    """The accepted readings of the meters of `photos` (from the output's state, `meterread.read.state`), leaving out
    the rows run `exclude_run` wrote (a retried shard's own) and the earlier readings of `photos` themselves: they
    are read again tonight (a new model, a new version, `--reprocess`), so an old misread of one must not be the
    reference, before or after, of another."""
    photos = list(photos)
    out_fs, out_root = resolve(config.output)
    meter_ids = [photo.meter_id for photo in photos]
    history = MeterHistory.from_table(StateView(out_fs, out_root, exclude_run).history(meter_ids))
    for photo in photos:
        history.supersede(photo.uri)
    return history


def planned_photos(plan: RunPlan) -> list[Photo]:
    return [photo for shard in plan.shards for photo in shard.photos]
