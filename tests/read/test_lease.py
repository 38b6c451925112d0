"""Two runs for the same output: only one writes; the other stops with a clear message."""

import json
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from meterread.read.lease import LEASE_PATH, RunLocked, acquire, break_lease, ensure_held, release, renew
from meterread.storage import resolve
from tests.factories import failing_once

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path):
    if request.param == "local":
        return resolve(str(tmp_path / "out"))
    fs, bucket = request.getfixturevalue("s3_bucket")
    return resolve(f"s3://{bucket}/out")


def test_second_writer_is_refused_until_release(output):
    fs, root = output
    first = acquire(fs, root, "night-1", now=T0)
    with pytest.raises(RunLocked, match="locked by run night-1"):
        acquire(fs, root, "night-1-again", now=T0 + timedelta(minutes=5))
    assert acquire(fs, root, "night-1", now=T0 + timedelta(minutes=5)).run_id == "night-1"  # a retry re-enters
    release(first)
    assert acquire(fs, root, "night-2", now=T0 + timedelta(minutes=6)).run_id == "night-2"


def test_expired_lease_of_a_crashed_run_is_taken_over(output):
    fs, root = output
    acquire(fs, root, "crashed", ttl=timedelta(hours=1), now=T0)
    lease = acquire(fs, root, "next-night", now=T0 + timedelta(hours=2))
    assert lease.run_id == "next-night"
    with pytest.raises(RunLocked, match="next-night"):
        acquire(fs, root, "third", now=T0 + timedelta(hours=2, minutes=1))


def test_a_live_run_keeps_its_lease_past_the_ttl_by_renewing(output):
    fs, root = output
    night = acquire(fs, root, "long-night", ttl=timedelta(hours=1), now=T0)
    renew(night, ttl=timedelta(hours=1), now=T0 + timedelta(minutes=50))
    kept = r"locked by run long-night .*since 2026-03-01T02:00:00\+00:00, until 2026-03-01T03:50"  # renewed expiry
    with pytest.raises(RunLocked, match=kept):
        acquire(fs, root, "next-night", now=T0 + timedelta(minutes=90))  # past the first TTL, within the renewed one


def test_a_run_whose_lease_was_taken_over_must_stop(output):
    fs, root = output
    stalled = acquire(fs, root, "stalled", ttl=timedelta(hours=1), now=T0)
    acquire(fs, root, "next-night", now=T0 + timedelta(hours=2))  # the stalled run's lease had expired
    with pytest.raises(RunLocked, match="run stalled lost the output's lease: run next-night holds it"):
        renew(stalled, now=T0 + timedelta(hours=2, minutes=5))
    with pytest.raises(RunLocked, match="locked by run next-night"):
        acquire(fs, root, "third", now=T0 + timedelta(hours=2, minutes=6))  # the new holder's lease is untouched


def test_a_run_whose_lease_was_taken_over_and_released_must_stop_too(output):
    fs, root = output
    stalled = acquire(fs, root, "stalled", ttl=timedelta(hours=1), now=T0)
    release(acquire(fs, root, "next-night", now=T0 + timedelta(hours=2)))  # took over, finished, released
    with pytest.raises(RunLocked, match="stalled lost the output's lease: no run holds it"):
        renew(stalled, now=T0 + timedelta(hours=3))
    assert acquire(fs, root, "third", now=T0 + timedelta(hours=3)).run_id == "third"  # renew did not resurrect it


def test_a_retried_run_reentering_its_lease_gets_a_fresh_ttl(output):
    fs, root = output
    acquire(fs, root, "night-1", ttl=timedelta(hours=1), now=T0)
    acquire(fs, root, "night-1", ttl=timedelta(hours=1), now=T0 + timedelta(minutes=55))  # the retry
    with pytest.raises(RunLocked, match="locked by run night-1"):
        acquire(fs, root, "night-2", now=T0 + timedelta(minutes=90))


def test_shard_work_is_written_only_under_its_nights_unexpired_lease(output):
    fs, root = output
    acquire(fs, root, "night-1", ttl=timedelta(hours=1), now=T0)
    ensure_held(fs, root, "night-1", now=T0 + timedelta(minutes=30))
    with pytest.raises(RunLocked, match="night-1 no longer holds the output's lease: it expired at 2026-03-01T03:00"):
        ensure_held(fs, root, "night-1", now=T0 + timedelta(minutes=61))  # the orchestrator died
    with pytest.raises(RunLocked, match="night-0 no longer holds the output's lease: run night-1 holds it"):
        ensure_held(fs, root, "night-0", now=T0)


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()  # reaped: the pid is gone
    return process.pid


def left_by(fs, root, run_id: str, **record) -> None:
    """A lease as a run on another process (`record`: its pid, host) left it, unexpired."""
    acquire(fs, root, run_id, now=T0)
    path = f"{root}/{LEASE_PATH}"
    fs.pipe_file(path, json.dumps({**json.loads(fs.cat_file(path)), **record}).encode())


def test_a_lease_whose_process_is_gone_on_this_host_is_taken_over_at_once(output, caplog):
    fs, root = output
    left_by(fs, root, "crashed", pid=dead_pid())
    with caplog.at_level("WARNING", logger="meterread.read.lease"):
        taken = acquire(fs, root, "next-night", now=T0 + timedelta(minutes=5))  # well within the crashed run's TTL
    assert taken.run_id == "next-night"
    assert "taking over the output's lease from run crashed" in caplog.text and "its process is gone" in caplog.text


def test_a_lease_held_elsewhere_or_by_a_live_process_waits_for_its_ttl(output):
    fs, root = output
    left_by(fs, root, "remote", pid=dead_pid(), host="gpu-worker-7")
    with pytest.raises(RunLocked, match=r"locked by run remote \(host gpu-worker-7.*meterread unlock"):
        acquire(fs, root, "next-night", now=T0 + timedelta(minutes=5))  # its pid means nothing here
    assert break_lease(fs, root)["run_id"] == "remote" and break_lease(fs, root) is None
    acquire(fs, root, "live", now=T0)  # this very process
    with pytest.raises(RunLocked, match="locked by run live"):
        acquire(fs, root, "next-night", now=T0 + timedelta(minutes=5))
    with pytest.raises(RunLocked, match="run live .* which is still running; not unlocking"):
        break_lease(fs, root)
    assert break_lease(fs, root, force=True)["run_id"] == "live"
    assert acquire(fs, root, "next-night", now=T0 + timedelta(minutes=5)).run_id == "next-night"


def test_taking_the_lease_survives_a_storage_blip(s3_bucket, monkeypatch):
    """The S3 client no longer retries by itself: the exclusive create is retried by the storage helper, and a
    retry after a lost success finds the lease there (FileExistsError is final, never retried)."""
    from meterread import storage

    fs, bucket = s3_bucket
    blip_once = failing_once(fs.pipe_file, ConnectionError("reset by peer"))
    calls = blip_once.calls
    monkeypatch.setattr(fs, "pipe_file", blip_once)
    monkeypatch.setattr(storage, "retry_pause", lambda _: None)
    held = acquire(fs, f"{bucket}/out", "night-1")
    assert held.run_id == "night-1" and len(calls) == 2
    with pytest.raises(RunLocked, match="locked by run night-1"):
        acquire(fs, f"{bucket}/out", "night-2")
    assert len(calls) == 3  # the second run's create met the lease once: not retried
