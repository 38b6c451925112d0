"""End to end over the real S3 protocol (moto server + s3fs) under one Prefect test harness."""

import json
import time
from datetime import datetime, timezone

import pyarrow.dataset as ds
import pytest

from meterread.config import ReadConfig
from meterread.data.synth import format_reading, render_meter
from meterread.read import runner, sink
from meterread.storage import resolve
from tests.factories import BAD_FILES, failing_once, meter_jpeg

pytestmark = pytest.mark.prefect


def put_photos(fs, bucket, count, start_day=1):
    keys = []
    for i in range(count):
        key = f"photos/MTR-{i % 3:03d}/202602{start_day + i // 3:02d}T0{i % 10}0000.jpg"
        fs.pipe_file(f"{bucket}/{key}", meter_jpeg(format_reading(1000 + i, 5, 1), seed=i))
        keys.append(key)
    return keys


def read_back(output):
    fs, root = resolve(output)
    return sink.read_output(fs, root)


def test_nightly_read_against_s3(prefect_harness, s3_bucket, tiny_paligemma):
    from flows.nightly_read import nightly_read

    fs, bucket = s3_bucket
    keys = put_photos(fs, bucket, 7)
    fs.pipe_file(f"{bucket}/photos/MTR-BAD/20260201T000000.jpg", BAD_FILES["text-as-jpg"][0])
    fs.pipe_file(f"{bucket}/photos/notes.txt", b"not a photo, not listed")
    source, output = f"s3://{bucket}/photos", f"s3://{bucket}/readings"
    model = {"family": "paligemma", "base": tiny_paligemma, "device": "cpu"}

    manifest = nightly_read(ReadConfig(source=source, output=output, model=model, batch_size=4, shard_size=3))
    table = read_back(output)
    assert table.num_rows == 8 == manifest["processed"] == manifest["listed"]
    assert table.schema == sink.SCHEMA
    uris = table.column("image_uri").to_pylist()
    assert sorted(uris) == sorted(
        [f"s3://{bucket}/{k}" for k in keys] + [f"s3://{bucket}/photos/MTR-BAD/20260201T000000.jpg"]
    )
    statuses = dict(zip(uris, table.column("status").to_pylist()))
    assert statuses[f"s3://{bucket}/photos/MTR-BAD/20260201T000000.jpg"] == "error"

    # partitions: hive directories named by capture date, readable by plain pyarrow discovery
    fs.invalidate_cache()
    dirs = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/readings") if "capture_date=" in p)
    assert dirs == ["capture_date=2026-02-01", "capture_date=2026-02-02", "capture_date=2026-02-03"]
    plain = ds.dataset(f"{bucket}/readings", filesystem=fs, format="parquet", partitioning="hive").to_table()
    assert plain.num_rows == 8
    assert fs.exists(f"{bucket}/readings/_manifests/{manifest['run_id']}.json")
    from meterread.tables.store import read_table

    assert read_table(output, "readings_current").num_rows == 8  # the analyst tables, updated at the end
    assert read_table(output, "review_queue").column("status").to_pylist().count("error") == 1

    # artifacts: counts by status and a sample of the flagged/error rows
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:  # the newest: other tests' nights publish the same keys
        newest_first = {"sort": ArtifactSort.CREATED_DESC, "limit": 1}
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["read-summary"])), **newest_first
        )
        sample = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["flagged-sample"])), **newest_first
        )
    summary = {row["status"]: row["photos"] for row in json.loads(artifacts[0].data)}
    assert sum(summary[s] for s in ("accepted", "flagged", "error")) == 8 and summary["error"] == 1
    assert any("MTR-BAD" in row["image_uri"] for row in json.loads(sample[0].data))

    # rerun: nothing new, nothing added
    rerun = nightly_read(ReadConfig(source=source, output=output, model=model, batch_size=4, shard_size=3))
    assert (rerun["processed"], rerun["already_done"]) == (0, 8)
    assert read_back(output).num_rows == 8
    with get_client(sync_client=True) as client:
        newest = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["flagged-sample"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert json.loads(newest[0].data) == []  # written every night: the newest sample is never an older night's

    # one new photo: exactly one new row
    photo = render_meter("00042.0", __import__("numpy").random.default_rng(1))
    import cv2

    fs.pipe_file(f"{bucket}/photos/MTR-NEW/20260210T120000.jpg", cv2.imencode(".jpg", photo)[1].tobytes())
    third = nightly_read(ReadConfig(source=source, output=output, model=model, batch_size=4, shard_size=3))
    assert (third["processed"], third["already_done"]) == (1, 8)
    final = read_back(output)
    assert final.num_rows == 9
    assert read_table(output, "readings_current").num_rows == 9  # only the new photo's meter recomputed
    assert len(set(final.column("image_uri").to_pylist())) == 9


def test_same_run_id_rewrites_its_own_files(prefect_harness, s3_bucket, tiny_paligemma):
    from flows.nightly_read import nightly_read

    fs, bucket = s3_bucket
    put_photos(fs, bucket, 4)
    source, output = f"s3://{bucket}/photos", f"s3://{bucket}/readings"
    model = {"family": "paligemma", "base": tiny_paligemma, "device": "cpu"}
    first = nightly_read(ReadConfig(source=source, output=output, model=model, run_id="night-7", reprocess=True))
    second = nightly_read(ReadConfig(source=source, output=output, model=model, run_id="night-7", reprocess=True))
    assert first["files"] == second["files"]
    assert read_back(output).num_rows == 4


def test_florence2_runs_through_the_nightly_flow(prefect_harness, s3_bucket, tiny_florence2):
    from flows.nightly_read import nightly_read

    fs, bucket = s3_bucket
    put_photos(fs, bucket, 3)
    model = {"family": "florence2", "base": tiny_florence2, "device": "cpu"}
    manifest = nightly_read(
        ReadConfig(
            source=f"s3://{bucket}/photos",
            output=f"s3://{bucket}/readings",
            model=model,
            tasks=["<OCR_WITH_REGION>"],
            meter_types=["electricity-lcd", "gas-mechanical"],
        )
    )
    table = read_back(f"s3://{bucket}/readings")
    assert manifest["processed"] == table.num_rows == 3
    assert set(table.column("prompt").to_pylist()) == {"<DocVQA>What is the meter values?"}
    assert all(
        json.loads(t)["<OCR_WITH_REGION>"].keys() == {"quad_boxes", "labels"}
        for t in table.column("task_outputs").to_pylist()
    )


def test_a_second_run_for_the_same_output_is_refused(prefect_harness, s3_bucket, tiny_paligemma):
    from flows.nightly_read import nightly_read
    from meterread.read.lease import RunLocked, acquire, release

    fs, bucket = s3_bucket
    put_photos(fs, bucket, 2)
    out_fs, root = resolve(f"s3://{bucket}/readings")
    held = acquire(out_fs, root, "night-running-elsewhere")
    model = {"family": "paligemma", "base": tiny_paligemma, "device": "cpu"}
    with pytest.raises(RunLocked, match="night-running-elsewhere"):
        nightly_read(ReadConfig(source=f"s3://{bucket}/photos", output=f"s3://{bucket}/readings", model=model))
    assert read_back(f"s3://{bucket}/readings").num_rows == 0
    release(held)
    assert (
        nightly_read(ReadConfig(source=f"s3://{bucket}/photos", output=f"s3://{bucket}/readings", model=model))[
            "processed"
        ]
        == 2
    )


def test_a_night_that_lost_its_lease_stops_before_writing(prefect_harness, s3_bucket, tiny_paligemma, monkeypatch):
    from flows.nightly_read import nightly_read
    from meterread.read import lease

    fs, bucket = s3_bucket
    put_photos(fs, bucket, 2)
    out_fs, root = resolve(f"s3://{bucket}/readings")
    process_shard = runner.process_shard

    def taken_over_while_reading(*args, **kwargs):  # this night stalls past its TTL; another run takes over
        rows = process_shard(*args, **kwargs)
        out_fs.rm_file(f"{root}/{lease.LEASE_PATH}")
        lease.acquire(out_fs, root, "next-night")
        return rows

    monkeypatch.setattr(runner, "process_shard", taken_over_while_reading)
    model = {"family": "paligemma", "base": tiny_paligemma, "device": "cpu"}
    with pytest.raises(lease.RunLocked, match="lost the output's lease: run next-night holds it"):
        nightly_read(ReadConfig(source=f"s3://{bucket}/photos", output=f"s3://{bucket}/readings", model=model))
    assert read_back(f"s3://{bucket}/readings").num_rows == 0
    assert json.loads(out_fs.cat_file(f"{root}/{lease.LEASE_PATH}"))["run_id"] == "next-night"


def test_lease_renewal_retries_storage_trouble_but_not_a_lost_lease(prefect_harness, s3_bucket, monkeypatch):
    """One retry layer: the renewal's S3 write is retried by the storage helper, the task itself never retries, and
    a lost lease stops the night at once."""
    from prefect import flow

    from flows import nightly_read as night
    from meterread import storage
    from meterread.read import lease

    fs, bucket = s3_bucket
    held = lease.acquire(fs, f"{bucket}/out", "night-1")

    @flow
    def renew_once():  # inside a flow run, as in the night
        night.renew_lease(held)

    real_pipe = fs.pipe_file
    flaky_pipe = failing_once(real_pipe, OSError("503 Slow Down"))
    writes = flaky_pipe.calls
    monkeypatch.setattr(fs, "pipe_file", flaky_pipe)
    monkeypatch.setattr(storage, "retry_pause", lambda _: None)
    renew_once()
    assert len(writes) == 2 and night.renew_lease.retries == 0  # retried once by with_retries, then renewed

    now = datetime.now(timezone.utc)
    real_pipe(held.path, json.dumps(lease.lease_record("night-2", now, now)).encode())  # another run took over
    writes.clear()
    with pytest.raises(lease.RunLocked):
        renew_once()
    assert writes == []  # stopped before writing, and not retried


def test_a_night_with_nothing_to_read_fails_and_writes_nothing(prefect_harness, s3_bucket):
    from flows.fanout import nightly_fanout
    from flows.nightly_read import nightly_read

    fs, bucket = s3_bucket
    fs.pipe_file(f"{bucket}/photos/notes.txt", b"not a photo")
    model = {"family": "paligemma", "base": "x", "device": "cpu"}  # never loaded: the night stops first
    output = f"s3://{bucket}/readings"
    cases = [  # both flows list through the same task: each reason once per flow is enough (a flow run costs ~5 s)
        (nightly_read, "s3://no-such-bucket-typo/photos", "does not exist"),
        (nightly_read, f"s3://{bucket}/photos", "no photos"),
        (nightly_fanout, f"s3://{bucket}/photos", "no photos"),
    ]
    for night, source, reason in cases:
        state = night(ReadConfig(source=source, output=output, model=model), return_state=True)
        assert state.is_failed(), (night.name, source)
        assert reason in str(state.result(raise_on_failure=False)), (night.name, source)
        fs.invalidate_cache()
        assert not fs.exists(f"{bucket}/readings"), (night.name, source)  # no lease, no _manifests


def test_library_logs_reach_the_flow_runs_logs(prefect_harness, s3_bucket, tiny_paligemma):
    """A `meterread.*` log record (here the state fold's) is in the flow run's logs, so it shows in the Prefect UI."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from flows.nightly_read import nightly_read

    fs, bucket = s3_bucket
    put_photos(fs, bucket, 3)
    model = {"family": "paligemma", "base": tiny_paligemma, "device": "cpu"}
    state = nightly_read(
        ReadConfig(source=f"s3://{bucket}/photos", output=f"s3://{bucket}/readings", model=model), return_state=True
    )
    run_id = state.state_details.flow_run_id
    messages = []
    for _ in range(40):  # the API log handler ships records in the background
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        messages = [log.message for log in logs if log.name.startswith("meterread")]
        if any("folded 3 rows" in message for message in messages):
            break
        time.sleep(0.25)
    assert any("folded 3 rows" in message for message in messages), messages


def test_a_credentials_block_becomes_storage_options(prefect_harness, s3_bucket, tiny_paligemma, monkeypatch):
    from prefect.blocks.system import Secret

    from flows.nightly_read import nightly_read
    from meterread import storage

    monkeypatch.setattr(storage, "_S3_CREDENTIALS", {})
    fs, bucket = s3_bucket
    put_photos(fs, bucket, 2)
    secret = {"aws_access_key_id": "block-key", "aws_secret_access_key": "block-secret"}
    Secret(value=json.dumps(secret)).save("meterread-test-s3", overwrite=True)
    model = {"family": "paligemma", "base": tiny_paligemma, "device": "cpu"}
    manifest = nightly_read(
        ReadConfig(source=f"s3://{bucket}/photos", output=f"s3://{bucket}/readings", model=model),
        credentials_block="meterread-test-s3",
    )
    assert manifest["processed"] == 2
    assert (storage._S3_CREDENTIALS["key"], storage._S3_CREDENTIALS["secret"]) == ("block-key", "block-secret")
    assert "block-secret" not in json.dumps(manifest)  # never written


def test_a_night_reads_the_registrys_current_version_and_records_it(prefect_harness, s3_bucket, tiny_paligemma):
    from flows.nightly_read import nightly_read
    from meterread.models.base import ModelLoadError
    from meterread.training.registry import publish

    fs, bucket = s3_bucket
    put_photos(fs, bucket, 3)
    registry = f"s3://{bucket}/registry"
    night = {"source": f"s3://{bucket}/photos", "output": f"s3://{bucket}/readings"}
    model = {"base": f"registry://{registry}", "device": "cpu"}
    with pytest.raises(ModelLoadError, match=f"model registry {registry} has no current model"):
        nightly_read(ReadConfig(**night, model=model))
    assert not fs.exists(f"{bucket}/readings")  # nothing written, no lease taken

    pointer = publish(registry, tiny_paligemma, 0.95, record={"family": "paligemma", "strategy": "full"})
    manifest = nightly_read(ReadConfig(**night, model=model))
    assert (manifest["model_reference"], manifest["model_version"]) == (f"registry://{registry}", pointer["version"])
    assert manifest["config"]["model"]["reference"] == f"registry://{registry}@{pointer['version']}"
    assert manifest["processed"] == 3 and set(read_back(night["output"]).column("model_id").to_pylist()) == {
        manifest["model_id"]
    }
