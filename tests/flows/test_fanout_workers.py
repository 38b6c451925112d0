"""The fan-out on Prefect's own distributed execution: a real local Prefect server (SQLite), deployments from
prefect.yaml, two `process` workers on the `gpu` pool (one flow run at a time each) and one on `control`, photos
and output on the moto S3 server. Every process started here is stopped at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from meterread.config import DEMO_MODEL_DIR
from meterread.data.synth import write_bucket
from meterread.read import sink
from meterread.storage import resolve
from meterread.training.registry import publish
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]


class Processes:
    """Start processes in their own session; stop them all (SIGTERM, then SIGKILL) on close."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, command: list[str], env: dict) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.started:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def tail(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]


def wait_for_health(url: str, server: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("prefect server exited")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError("prefect server did not become healthy")


def run_cli(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(PREFECT + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture
def prefect_cluster(tmp_path, s3_endpoint):
    """(env for clients, Processes): a Prefect server, the `gpu` and `control` pools and three workers."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "METERREAD_PROJECT_DIR": str(ROOT),
        "PYTHONPATH": str(ROOT),
    }
    processes = Processes(tmp_path)
    try:
        server = processes.start(
            "server", PREFECT + ["server", "start", "--host", "127.0.0.1", "--port", str(port)], env
        )
        wait_for_health(api, server)
        for pool in ("gpu", "control"):
            run_cli(["work-pool", "create", pool, "--type", "process"], env)
        for name, pool in (("gpu-1", "gpu"), ("gpu-2", "gpu"), ("control-1", "control")):
            worker_env = {**env, "METERREAD_WORKER_NAME": name}
            command = PREFECT + ["worker", "start", "--pool", pool, "--name", name, "--limit", "1", "--type", "process"]
            processes.start(name, command, worker_env)
        yield env, processes
    finally:
        processes.close()


@pytest.mark.slow
def test_fanout_reads_every_photo_once_across_two_gpu_workers(tmp_path, s3_bucket, prefect_cluster):
    env, processes = prefect_cluster
    fs, bucket = s3_bucket
    samples = write_bucket(tmp_path / "photos", 24, seed=41)  # 4 meters x 6 photos
    fs.put(str(tmp_path / "photos") + "/", f"{bucket}/incoming/", recursive=True)
    fs.rm(f"{bucket}/incoming/annotations.jsonl")
    source, output = f"s3://{bucket}/incoming", f"s3://{bucket}/readings"
    registry = tmp_path / "registry"  # prefect.yaml's read deployments follow it (registry://): promote a model
    pointer = publish(str(registry), DEMO_MODEL_DIR, 0.983)  # a whole model; its train_config.json says so
    deploy_env = {**env, "METERREAD_SOURCE": source, "METERREAD_OUTPUT": output, "METERREAD_REGISTRY": str(registry)}
    run_cli(["--no-prompt", "deploy", "--all"], deploy_env)

    night = {"source": source, "output": output, "model": {"base": f"registry://{registry}"}}
    params = {"config": {**night, "shard_size": 2, "batch_size": 4}}  # a meter is never split: 4 meters -> 4 shards
    run = subprocess.run(
        PREFECT
        + ["deployment", "run", "nightly-fanout/nightly-fanout", "--params", json.dumps(params)]
        + ["--watch", "--watch-interval", "2", "--watch-timeout", "540"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    logs = "\n".join(f"--- {name}\n{processes.tail(name)}" for name in ("control-1", "gpu-1", "gpu-2"))
    assert run.returncode == 0 and "Completed" in run.stdout, f"{run.stdout[-2000:]}\n{run.stderr[-2000:]}\n{logs}"

    out_fs, root = resolve(output)
    table = sink.read_output(out_fs, root)
    uris = table.column("image_uri").to_pylist()
    assert sorted(uris) == sorted(f"s3://{bucket}/incoming/{s.key}" for s in samples)  # exactly one row each
    (manifest_path,) = out_fs.glob(f"{root}/_manifests/*.json")
    manifest = json.loads(out_fs.cat(manifest_path))
    assert manifest["processed"] == 24 and manifest["failed_shards"] == []
    assert manifest["model_version"] == pointer["version"]  # resolved once, read by every shard
    assert set(manifest["workers"]) == {"gpu-1", "gpu-2"}, manifest["workers"]  # both GPU workers read shards
    assert sum(manifest["workers"].values()) == manifest["shards"] >= 3
    assert not out_fs.exists(f"{root}/_leases/active-run.json")  # the night's lease was released
    from meterread.tables.store import read_table

    assert read_table(output, "readings_current").num_rows == 24  # the gather updated the analyst tables
