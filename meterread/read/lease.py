"""One writer per output: a lease object written with create-if-absent semantics.

`OUTPUT/_leases/active-run.json` is created exclusively (`O_EXCL` locally, S3 `If-None-Match: *` through s3fs'
`mode="create"`), so of two runs started for the same output only one writes; the other stops with a message
naming the holder. A lease left by a crashed run expires after its TTL, and is taken over at once when its holder
ran on this host (same PID namespace) and its process is gone; `meterread unlock OUTPUT` (`break_lease`) removes
any other. The same run id may re-enter its own lease (a retried flow run). A live run renews its lease as it goes
(after every shard, and while the fan-out orchestrator waits), so a night longer than the TTL keeps it, and a run
whose lease was taken over stops before writing beside the new holder.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from fsspec import AbstractFileSystem

from meterread.storage import is_local, with_retries, write_bytes

LEASE_PATH = "_leases/active-run.json"
DEFAULT_TTL = timedelta(hours=6)
log = logging.getLogger(__name__)


class RunLocked(RuntimeError):
    """Another run holds the output; the message says which and until when."""


@dataclass(frozen=True)
class Lease:
    fs: AbstractFileSystem
    path: str
    run_id: str


def create_exclusive(fs: AbstractFileSystem, path: str, data: bytes) -> bool:
    """Write `data` only if `path` does not exist; False when it already does."""
    if is_local(fs):
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        try:
            with open(path, "xb") as handle:
                handle.write(data)
            return True
        except FileExistsError:
            return False
    try:
        with_retries(lambda: fs.pipe_file(path, data, mode="create"))  # a retry after a lost success: exists
        return True
    except (FileExistsError, OSError) as error:
        if "PreconditionFailed" in repr(error) or isinstance(error, FileExistsError) or "412" in str(error):
            return False
        raise


def _read(fs: AbstractFileSystem, path: str) -> dict | None:
    try:
        return json.loads(with_retries(lambda: fs.cat_file(path)))
    except FileNotFoundError:
        return None


def lease_record(run_id: str, acquired_at: datetime, expires_at: datetime) -> dict:
    """What the lease object says: who holds the output, from where, since and until when."""
    return {
        "run_id": run_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_namespace": pid_namespace(),
        "acquired_at": acquired_at.isoformat(),
        "expires_at": expires_at.isoformat(),
    }


def pid_namespace() -> str | None:
    """This process's PID namespace (Linux), so a PID is only compared within one: containers share host names."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def holder_alive(holder: dict) -> bool | None:
    """Whether the process holding a lease still runs: known only for a holder on this host in this PID namespace
    (else None). A reused PID reads as alive, which only delays a takeover to the TTL."""
    if holder.get("host") != socket.gethostname() or holder.get("pid_namespace") != pid_namespace():
        return None
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def describe_holder(holder: dict) -> str:
    return (
        f"run {holder.get('run_id')} (host {holder.get('host')}, pid {holder.get('pid')}, since "
        f"{holder.get('acquired_at')}, until {holder.get('expires_at')})"
    )


def acquire(
    fs: AbstractFileSystem, root: str, run_id: str, ttl: timedelta = DEFAULT_TTL, now: datetime | None = None
) -> Lease:
    """Take the output's lease for `run_id` or raise RunLocked."""
    now = now or datetime.now(timezone.utc)
    path = f"{root}/{LEASE_PATH}"
    payload = json.dumps(lease_record(run_id, now, now + ttl)).encode()
    for _ in range(2):
        if create_exclusive(fs, path, payload):
            return Lease(fs, path, run_id)
        holder = _holder(fs, path)
        if holder is None:
            continue  # released meanwhile: try again
        if holder.get("run_id") == run_id:  # a retried run re-enters its own lease, for a fresh TTL
            lease = Lease(fs, path, run_id)
            renew(lease, ttl, now)
            return lease
        if holder_alive(holder) is False:
            log.warning("taking over the output's lease from %s: its process is gone", describe_holder(holder))
        elif datetime.fromisoformat(holder["expires_at"]) > now:
            raise RunLocked(
                f"output is locked by run {holder['run_id']} (host {holder.get('host')}, since "
                f"{holder.get('acquired_at')}, until {holder['expires_at']}); not starting a second writer. "
                f"If that run is dead, run `meterread unlock {fs.unstrip_protocol(root)}` or wait for the lease "
                "to expire."
            )
        with_retries(lambda: fs.rm_file(path))  # expired, or its process is gone: a crashed run left it
    raise RunLocked(f"could not take the lease at {fs.unstrip_protocol(path)}")


def _holder(fs: AbstractFileSystem, path: str) -> dict | None:
    fs.invalidate_cache(path)
    return _read(fs, path)


def _why_not_held(holder: dict | None, run_id: str) -> str | None:
    """Why run `run_id` does not hold the lease `holder` describes; None when it does."""
    if holder is None:
        return "no run holds it (released by a run that took it over, or deleted)"
    if holder.get("run_id") != run_id:
        return f"run {holder['run_id']} holds it (host {holder.get('host')}, since {holder.get('acquired_at')})"
    return None


def ensure_held(fs: AbstractFileSystem, root: str, run_id: str, now: datetime | None = None) -> None:
    """Raise RunLocked unless run `run_id` holds the output's unexpired lease: a fan-out shard run writes only
    under its night's lease (not after the orchestrator gave up or died, nor beside a run that took over)."""
    now = now or datetime.now(timezone.utc)
    holder = _holder(fs, f"{root}/{LEASE_PATH}")
    why = _why_not_held(holder, run_id)
    if why is None and datetime.fromisoformat(holder["expires_at"]) <= now:
        why = f"it expired at {holder['expires_at']} (the orchestrator stopped renewing it)"
    if why is not None:
        raise RunLocked(
            f"run {run_id} no longer holds the output's lease: {why}; not writing. "
            "Rerun the night: rows already written are kept and skipped."
        )


def renew(lease: Lease, ttl: timedelta = DEFAULT_TTL, now: datetime | None = None) -> None:
    """Extend this run's lease to `now + ttl`; raise RunLocked if this run no longer holds it (it stalled past
    its TTL and another run took over, maybe already released): the run must stop writing.

    Read-then-write, not compare-and-swap: a takeover racing a renewal can let this run write one more shard
    before its next renewal fails; the ledger keeps that shard's rows, and takeovers need a run stalled past its TTL.
    """
    now = now or datetime.now(timezone.utc)
    holder = _holder(lease.fs, lease.path)
    why = _why_not_held(holder, lease.run_id)
    if why is not None:
        raise RunLocked(
            f"run {lease.run_id} lost the output's lease: {why}; stopping before writing beside another run. "
            "Rerun when that run is done: rows already written are kept and skipped."
        )
    record = lease_record(lease.run_id, datetime.fromisoformat(holder["acquired_at"]), now + ttl)
    write_bytes(lease.fs, lease.path, json.dumps(record).encode())  # whole or not at all; S3 PUTs retried


def break_lease(fs: AbstractFileSystem, root: str, force: bool = False) -> dict | None:
    """Remove the output's lease whoever holds it (`meterread unlock`); returns what it said, None when there was
    none. Refuses (RunLocked) a holder whose process is known to run, on this host, unless `force`."""
    path = f"{root}/{LEASE_PATH}"
    holder = _holder(fs, path)
    if holder is None:
        return None
    if holder_alive(holder) and not force:
        raise RunLocked(f"output is locked by {describe_holder(holder)}, which is still running; not unlocking")
    with_retries(lambda: fs.rm_file(path))
    return holder


def release(lease: Lease) -> None:
    """Drop the lease if this run still holds it."""
    holder = _holder(lease.fs, lease.path)
    if holder and holder.get("run_id") == lease.run_id:
        with_retries(lambda: lease.fs.rm_file(lease.path))
