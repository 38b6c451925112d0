"""Fan-out pieces under the session's Prefect harness: shard files on S3, idempotent shard reads, and the
orchestrator's retry of failed shard runs (the two-worker end-to-end run is test_fanout_workers.py)."""

import json
import logging
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from meterread.config import ModelSpec, ReadConfig
from meterread.models.base import spec_fingerprint
from meterread.read import fanout, lease, planning, runner, sink
from meterread.storage import resolve
from tests.flows.test_nightly_read import put_photos

pytestmark = pytest.mark.prefect


def config_for(bucket, tiny_paligemma, **overrides):
    model = ModelSpec(family="paligemma", base=tiny_paligemma, device="cpu")
    values = {"source": f"s3://{bucket}/photos", "output": f"s3://{bucket}/readings", "model": model}
    return ReadConfig(**{**values, "batch_size": 4, "shard_size": 2, **overrides}).validate()


def planned_night(s3_bucket, tiny_paligemma, run_id):
    """Six photos of three meters on S3, planned into shard files under the night's lease, as the orchestrator
    does: (config, plan, shard URIs, reader)."""
    fs, bucket = s3_bucket
    put_photos(fs, bucket, 6)
    config = config_for(bucket, tiny_paligemma)
    lease.acquire(*resolve(config.output), run_id)
    plan = planning.plan_run(config, spec_fingerprint(config.model), run_id)
    return config, plan, fanout.save_shards(config, plan), runner.cached_reader(config.model)


def test_planner_fingerprint_matches_the_loaded_reader(tiny_paligemma):
    spec = ModelSpec(family="paligemma", base=tiny_paligemma, device="cpu")
    assert spec_fingerprint(spec) == runner.cached_reader(spec).fingerprint


def test_a_shard_read_twice_rewrites_its_files_without_new_rows(s3_bucket, tiny_paligemma):
    config, plan, uris, reader = planned_night(s3_bucket, tiny_paligemma, "night-1")
    first = [fanout.read_shard_file(config, reader, uri) for uri in uris]
    again = fanout.read_shard_file(config, reader, uris[0])  # a retried shard
    assert again["files"] == first[0]["files"]
    out_fs, root = resolve(config.output)
    table = sink.read_output(out_fs, root)
    assert table.num_rows == 6 and len(set(table.column("image_uri").to_pylist())) == 6
    assert fanout.load_shard_result(config, "night-1", plan.shards[0].shard_id)["rows"] == len(plan.shards[0].photos)
    photo = plan.shards[0].photos[0]
    assert fanout.load_shard(uris[0])[1].photos[0] == photo  # photos round-trip through the shard file


def test_a_shard_run_writes_only_under_its_nights_lease(s3_bucket, tiny_paligemma):
    config, plan, uris, reader = planned_night(s3_bucket, tiny_paligemma, "night-3")
    out_fs, root = resolve(config.output)
    out_fs.rm_file(f"{root}/{lease.LEASE_PATH}")  # the orchestrator gave up on the night and released it
    with pytest.raises(lease.RunLocked, match="run night-3 no longer holds the output's lease: no run holds it"):
        fanout.read_shard_file(config, reader, uris[0])
    lease.acquire(out_fs, root, "next-night")
    with pytest.raises(lease.RunLocked, match="night-3 no longer holds the output's lease: run next-night holds it"):
        fanout.read_shard_file(config, reader, uris[0])
    assert sink.read_output(out_fs, root).num_rows == 0
    assert fanout.load_shard_result(config, "night-3", plan.shards[0].shard_id) is None  # the shard did not finish


def test_orchestrator_reruns_a_failed_shard_and_reports_one_that_keeps_failing(
    prefect_harness, s3_bucket, tiny_paligemma, monkeypatch
):
    import flows.fanout as fanout_flow

    config, plan, uris, reader = planned_night(s3_bucket, tiny_paligemma, "night-2")
    flaky, broken = plan.shards[0].shard_id, plan.shards[-1].shard_id
    submitted: dict[uuid.UUID, tuple[str, str]] = {}

    def submit(deployment, parameters, idempotency_key):  # stands in for run_deployment + a worker
        run_id = uuid.uuid4()
        shard_id, attempt = idempotency_key.split(":")[1], int(idempotency_key.split(":")[2])
        fails = shard_id == broken or (shard_id == flaky and attempt == 1)
        if not fails:
            fanout.read_shard_file(ReadConfig.from_mapping(parameters["config"]), reader, parameters["shard_uri"])
        submitted[run_id] = (shard_id, "FAILED" if fails else "COMPLETED")
        return run_id

    monkeypatch.setattr(fanout_flow, "submit_shard", submit)
    monkeypatch.setattr(fanout_flow, "wait_for_runs", lambda ids, *_: {i: submitted[i][1] for i in ids})
    options = {
        "config": {"source": config.source, "output": config.output, "model": {"base": tiny_paligemma}},
        "read_deployment": "read-shard/read-shard",
        "credentials_block": None,
        "shard_attempts": 2,
        "shard_timeout_seconds": None,
    }
    results, failed = fanout_flow.run_shards(config, plan, uris, options, logger=logging.getLogger("test"))
    assert failed == [broken]
    attempts = [shard_id for shard_id, _ in submitted.values()]
    assert attempts.count(flaky) == 2 and attempts.count(broken) == 2
    assert {r["shard_id"] for r in results} == {s.shard_id for s in plan.shards} - {broken}
    manifest = fanout.gather_manifest(config, plan, results, reader.fingerprint, datetime.now(timezone.utc), failed)
    missing = len(plan.shards[-1].photos)
    assert manifest["processed"] == 6 - missing and manifest["failed_shards"] == [broken]
    out_fs, root = resolve(config.output)
    assert sink.read_output(out_fs, root).num_rows == 6 - missing  # nothing duplicated by the rerun


def test_orchestrator_renews_its_lease_while_waiting_and_stops_if_it_was_taken(prefect_harness, s3_bucket, monkeypatch):
    import flows.fanout as fanout_flow

    fs, bucket = s3_bucket
    out_fs, root = resolve(f"s3://{bucket}/readings")
    monkeypatch.setattr(fanout_flow, "RENEW_LEASE_EVERY_S", 0.0)  # renew at the first poll
    held = lease.acquire(out_fs, root, "orchestrator", ttl=timedelta(minutes=1))
    assert fanout_flow.wait_for_runs.fn([], None, held) == {}
    expires = json.loads(out_fs.cat_file(f"{root}/{lease.LEASE_PATH}"))["expires_at"]
    assert datetime.fromisoformat(expires) > datetime.now(timezone.utc) + timedelta(hours=5)  # a fresh TTL
    out_fs.rm_file(f"{root}/{lease.LEASE_PATH}")
    lease.acquire(out_fs, root, "next-night")
    with pytest.raises(lease.RunLocked, match="orchestrator lost the output's lease: run next-night holds it"):
        fanout_flow.wait_for_runs.fn([], None, held)


def test_storage_trouble_while_renewing_is_retried_soon_not_fatal(monkeypatch):
    import flows.fanout as fanout_flow

    def slow_down(held):
        raise OSError("503 Slow Down")

    monkeypatch.setattr(lease, "renew", slow_down)
    assert fanout_flow.renew_while_waiting("held") == fanout_flow.RETRY_RENEWAL_S


def test_the_orchestrator_waits_on_shard_runs_through_prefect_futures(prefect_harness):
    """Real flow runs on the test server: one finished (its completion is seen), one never picked up (timed out)."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Scheduled

    import flows.fanout as fanout_flow

    @flow(name="shard-stand-in")
    def shard_stand_in():
        return None

    with get_client(sync_client=True) as client:
        finished = client.create_flow_run(shard_stand_in, state=Scheduled())
        stuck = client.create_flow_run(shard_stand_in, state=Scheduled())
        client.set_flow_run_state(finished.id, Completed(), force=True)
    states = fanout_flow.wait_for_runs.fn([finished.id, stuck.id], 1.0)
    assert states == {finished.id: "COMPLETED", stuck.id: "TIMED_OUT"}
    fanout_flow.cancel_runs.fn([finished.id, stuck.id])  # given up on: cancelled, so it never writes late
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(stuck.id).state.type.value == "CANCELLED"
        assert client.read_flow_run(finished.id).state.type.value == "COMPLETED"


def test_every_shard_reads_the_version_resolved_at_the_start_of_the_night(
    prefect_harness, s3_bucket, tiny_paligemma, tmp_path, monkeypatch
):
    import flows.fanout as fanout_flow
    from meterread.training.registry import publish

    fs, bucket = s3_bucket
    put_photos(fs, bucket, 6)
    folder = tmp_path / "registry"
    first = publish(str(folder), tiny_paligemma, 0.95, record={"family": "paligemma", "strategy": "full"})
    submitted: dict[uuid.UUID, dict] = {}

    def submit(deployment, parameters, idempotency_key):  # stands in for run_deployment + a GPU worker
        if not submitted:  # a promotion lands while the night runs
            publish(str(folder), tiny_paligemma, 0.97, record={"family": "paligemma", "strategy": "full"})
        run_id = uuid.uuid4()
        submitted[run_id] = parameters
        fanout_flow.read_shard.fn(**{**parameters, "config": ReadConfig.from_mapping(parameters["config"])})
        return run_id

    monkeypatch.setattr(fanout_flow, "submit_shard", submit)
    monkeypatch.setattr(fanout_flow, "wait_for_runs", lambda ids, *_, **__: {i: "COMPLETED" for i in ids})
    model = {"base": f"registry://{folder}", "device": "cpu"}
    night = {"source": f"s3://{bucket}/photos", "output": f"s3://{bucket}/readings", "shard_size": 2}
    manifest = fanout_flow.nightly_fanout(ReadConfig(**night, model=model))

    pinned = f"registry://{folder}@{first['version']}"
    assert len(submitted) == manifest["shards"] > 1
    assert {parameters["config"]["model"]["base"] for parameters in submitted.values()} == {pinned}
    for parameters in submitted.values():  # only what differs from the defaults: a worker fills in its own
        assert parameters["config"]["shard_size"] == 2 and "batch_size" not in parameters["config"]
    assert (manifest["model_reference"], manifest["model_version"]) == (f"registry://{folder}", first["version"])
    rows = sink.read_output(*resolve(night["output"]))
    assert rows.num_rows == 6 and set(rows.column("model_id").to_pylist()) == {
        str(folder / "versions" / first["version"])
    }


def test_a_night_deletes_the_shard_files_of_earlier_nights_and_keeps_its_own(s3_bucket, tiny_paligemma):
    config, plan, uris, reader = planned_night(s3_bucket, tiny_paligemma, "night-1")
    fanout.read_shard_file(config, reader, uris[0])  # a result file beside the shard files
    tonight = planning.plan_run(config, spec_fingerprint(config.model), "night-2")
    fanout.save_shards(config, tonight)
    assert fanout.prune_run_folders(config, "night-2") == ["night-1"]
    fs, root = resolve(config.output)
    fs.invalidate_cache()
    assert fs.ls(f"{root}/{fanout.RUNS_DIR}", detail=False) == [f"{root}/{fanout.RUNS_DIR}/night-2"]
    assert len(fs.ls(f"{root}/{fanout.RUNS_DIR}/night-2/shards")) == len(tonight.shards)
    assert fanout.prune_run_folders(config, "night-2") == []
    assert sink.read_output(fs, root).num_rows == len(plan.shards[0].photos)  # the rows are not shard files
