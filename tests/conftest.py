"""Shared fixtures: a moto S3 server on 127.0.0.1, tiny models, one Prefect test harness per session."""

from __future__ import annotations

import os
import socket
import tempfile

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Models and adapters fetched from the moto bucket, and file digests, go to a cache of this run's own (removed at
# exit), never into the user's ~/.cache/meterread, which every run used to grow by a few MB.
_CACHE = tempfile.TemporaryDirectory(prefix="meterread-test-cache-")
os.environ["METERREAD_CACHE"] = _CACHE.name
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs 2 workers on 2 cores: one torch thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from meterread.models.tiny import build_tiny  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 protocol endpoint (moto server) on 127.0.0.1; credentials and endpoint set in the environment."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing-secret",
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A fresh bucket per test; returns (s3fs filesystem, bucket name)."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    name = "meters-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    fs.mkdir(name)
    return fs, name


@pytest.fixture(scope="session")
def tiny_paligemma(tmp_path_factory) -> str:
    return str(build_tiny("paligemma", tmp_path_factory.mktemp("tiny-paligemma")))


@pytest.fixture(scope="session")
def tiny_florence2(tmp_path_factory) -> str:
    return str(build_tiny("florence2", tmp_path_factory.mktemp("tiny-florence2")))


@pytest.fixture(scope="session")
def tiny_ppocr(tmp_path_factory) -> str:
    return str(build_tiny("ppocr", tmp_path_factory.mktemp("tiny-ppocr")))


@pytest.fixture(scope="session")
def prefect_harness():
    """One ephemeral Prefect server for the whole session (starting one costs ~20-30 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run where CUDA is available and are reported skipped elsewhere (this CPU CI, the dev machines)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (no GPU on this machine); run on the GPU box: pytest -m gpu")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


class Throttled(Exception):
    pass


@pytest.fixture
def memory_files_that_fail_to_open_once(monkeypatch):
    """memory:// (Arrow opens a local path natively, a memory one through fsspec) whose Parquet files each fail to
    open for reading once with a transient error before they open: every Arrow read must go through
    `with_retries`. Yields the set of paths that failed; the memory filesystem is emptied afterwards."""
    from fsspec.implementations.memory import MemoryFileSystem

    from meterread import storage

    monkeypatch.setattr(storage, "retry_pause", lambda _: None)
    real_open, failed = MemoryFileSystem._open, set()

    def open_failing_once(self, path, mode="rb", *args, **kwargs):
        if "r" in mode and str(path).endswith(".parquet") and path not in failed:
            failed.add(path)
            raise Throttled("slow down (open)")
        return real_open(self, path, mode, *args, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "_open", open_failing_once)
    yield failed
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]


@pytest.fixture
def storage_that_fails_each_call_once(monkeypatch):
    """A local filesystem whose listing, reading, stat and delete calls each fail once per path with a transient
    error (throttling, as S3 answers it) before they work: every call site must go through `with_retries`. (Not an
    OSError: fsspec's local walk would swallow that and list nothing.)"""
    from fsspec.implementations.local import LocalFileSystem

    from meterread import storage

    monkeypatch.setattr(storage, "retry_pause", lambda _: None)
    failed, inside = set(), []

    def failing_once(name):
        real = getattr(LocalFileSystem, name)

        def call(self, path, *args, **kwargs):
            if not inside and (name, str(path)) not in failed:  # our calls, not fsspec's nested ones
                failed.add((name, str(path)))
                raise Throttled(f"slow down ({name})")
            inside.append(name)
            try:
                return real(self, path, *args, **kwargs)
            finally:
                inside.pop()

        return call

    for name in ("ls", "cat_file", "info", "find", "rm", "exists"):
        monkeypatch.setattr(LocalFileSystem, name, failing_once(name))
    return failed
