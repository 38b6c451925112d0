"""Robustness: a bad-input corpus drawn in the test, storage faults, crashes and reruns. Every listed photo ends as
exactly one row; bad files are `error` rows with a clear reason; odd but valid images are read."""

import io
import os
import struct
import zlib
from collections import Counter

import cv2
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from meterread.config import ModelSpec, ReadConfig
from meterread.read import history, planning, runner, sink
from meterread.read.runner import run_read
from meterread.storage import resolve
from tests.factories import ScriptedReader, meter_jpeg, png_bytes
from tests.read.test_runner import config_for as read_config

PHOTO = meter_jpeg("01234.5", seed=1, size=(320, 240))
RGB = cv2.cvtColor(cv2.imdecode(np.frombuffer(PHOTO, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size (a decompression bomb's calling card)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    data = zlib.compress(b"\x00" * 16)
    idat = struct.pack(">I", len(data)) + b"IDAT" + data + struct.pack(">I", zlib.crc32(b"IDAT" + data))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + b"\x00\x00\x00\x00IEND\xaeB`\x82"


def pil_bytes(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(RGB).save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


# name -> (bytes, expected status or None for "read", reason fragment for errors)
CORPUS = {
    "zero-byte": (b"", "error", "empty file"),
    "truncated-jpeg": (PHOTO[: len(PHOTO) // 2], "error", "truncated JPEG"),
    "corrupt-png": (png_bytes(RGB)[:60] + b"\x00" * 200 + b"IEND\xaeB`\x82", "error", "PNG"),
    "text-as-jpg": (b"meter 12345 kWh\n", "error", "not a JPEG or PNG image: text"),
    "html-as-jpg": (b"<!DOCTYPE html><html><body>503 Service Unavailable</body></html>", "error", "an HTML page"),
    "huge-dimensions": (png_claiming(100_000, 100_000), "error", "exceeds the"),
    "tiny-8x8": (png_bytes(np.zeros((8, 8, 3), np.uint8)), "error", "too small"),
    "png-16-bit": (cv2.imencode(".png", (RGB.astype(np.uint16) * 257)[..., ::-1])[1].tobytes(), None, None),
    "png-rgba": (cv2.imencode(".png", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGRA))[1].tobytes(), None, None),
    "grayscale": (cv2.imencode(".jpg", cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY))[1].tobytes(), None, None),
    "cmyk-jpeg": (pil_bytes(Image.fromarray(RGB).convert("CMYK"), "JPEG"), None, None),
    "exif-rotated": (exif_rotated(), None, None),
}


def config_for(tmp_path, model, **extra):
    return read_config(tmp_path, model, shard_size=4, **extra)


def rows(config):
    fs, root = resolve(config.output)
    return sink.read_output(fs, root).to_pylist()


def test_bad_input_corpus_gives_one_row_each(tmp_path, tiny_paligemma):
    bucket = tmp_path / "bucket"
    for index, (name, (data, _, _)) in enumerate(sorted(CORPUS.items())):
        path = bucket / f"MTR-{name}" / f"202603{index + 1:02d}T120000.{'png' if 'png' in name else 'jpg'}"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
    manifest = run_read(config_for(tmp_path, tiny_paligemma, max_pixels=50_000_000), progress=False)
    assert manifest["processed"] == manifest["listed"] == len(CORPUS)
    by_meter = {row["meter_id"].removeprefix("MTR-"): row for row in rows(config_for(tmp_path, tiny_paligemma))}
    assert sorted(by_meter) == sorted(CORPUS)
    for name, (_, status, reason) in CORPUS.items():
        row = by_meter[name]
        if status == "error":
            assert row["status"] == "error" and any(reason in r for r in row["reasons"]), (name, row["reasons"])
        else:
            assert row["status"] != "error" and row["reading_text"], (name, row["reasons"])
    assert (by_meter["exif-rotated"]["width"], by_meter["exif-rotated"]["height"]) == (240, 320)  # read upright


def test_odd_keys_duplicates_and_off_layout_photos(tmp_path, tiny_paligemma):
    bucket = tmp_path / "bucket"
    (bucket / "MTR 7").mkdir(parents=True)
    (bucket / "MTR 7" / "20260301T120000.jpg").write_bytes(PHOTO)  # space in the key
    (bucket / "MTR-8").mkdir()
    (bucket / "MTR-8" / "20260301T120000.jpg").write_bytes(PHOTO)  # same bytes under another key
    os.makedirs(os.fsencode(bucket / "caf") + b"\xe9", exist_ok=True)
    with open(os.fsencode(bucket / "caf") + b"\xe9/20260301T120000.jpg", "wb") as handle:
        handle.write(meter_jpeg("00001.0", seed=5))  # non-UTF-8 key
    (bucket / "loose-photo.jpg").write_bytes(meter_jpeg("00002.0", seed=6))  # off the layout
    manifest = run_read(config_for(tmp_path, tiny_paligemma), progress=False)
    table = rows(config_for(tmp_path, tiny_paligemma))
    assert manifest["processed"] == len(table) == 4
    by_uri = {row["image_uri"].rsplit("/bucket/", 1)[1]: row for row in table}
    assert by_uri["MTR 7/20260301T120000.jpg"]["meter_id"] == "MTR 7"
    assert (
        by_uri["MTR 7/20260301T120000.jpg"]["content_sha256"] == by_uri["MTR-8/20260301T120000.jpg"]["content_sha256"]
    )
    odd = by_uri["caf%E9/20260301T120000.jpg"]
    assert odd["meter_id"] == "caf%E9" and any("not valid UTF-8" in r for r in odd["reasons"])
    loose = by_uri["loose-photo.jpg"]
    assert loose["meter_id"] is None and any("does not match the photo layout" in r for r in loose["reasons"])
    assert loose["status"] != "accepted"


def test_flaky_storage_is_retried_and_a_dead_object_becomes_an_error_row(
    tmp_path, tiny_paligemma, s3_bucket, monkeypatch
):
    fs, bucket = s3_bucket
    for index in range(6):
        fs.pipe_file(f"{bucket}/in/MTR-{index}/20260301T12000{index}.jpg", meter_jpeg(f"0000{index}.0", seed=index))
    import s3fs

    real_cat = s3fs.S3FileSystem.cat_file
    calls = Counter()

    def flaky_cat(self, path, *args, **kwargs):
        calls[path] += 1
        if "MTR-5" in path or calls[path] == 1:  # every object fails once; MTR-5 always fails
            raise ConnectionError("connection reset by peer")
        return real_cat(self, path, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "cat_file", flaky_cat)
    # fsspec caches instances, and an instance made earlier carries its own sync `cat_file`: start fresh ones
    s3fs.S3FileSystem.clear_instance_cache()
    monkeypatch.setattr("meterread.storage.retry_pause", lambda _: None)
    config = ReadConfig(
        source=f"s3://{bucket}/in",
        output=f"s3://{bucket}/out",
        model=ModelSpec(base=tiny_paligemma, device="cpu"),
        storage_attempts=3,
    ).validate()
    manifest = run_read(config, progress=False)
    monkeypatch.setattr(s3fs.S3FileSystem, "cat_file", real_cat)
    s3fs.S3FileSystem.clear_instance_cache()
    table = rows(config)
    assert manifest["processed"] == len(table) == 6
    dead = [row for row in table if "MTR-5" in row["image_uri"]][0]
    assert dead["status"] == "error" and "could not read object after retries: ConnectionError" in dead["reasons"][0]
    assert all(row["status"] != "error" for row in table if row is not dead)
    assert calls[f"{bucket}/in/MTR-5/20260301T120005.jpg"] == 3


def test_crash_mid_run_then_rerun_completes_the_night_exactly_once(tmp_path, tiny_paligemma, monkeypatch):
    from meterread.data.synth import write_bucket

    write_bucket(tmp_path / "bucket", 12, seed=12)  # two meters: two shards (a meter is never split)
    config = config_for(tmp_path, tiny_paligemma, run_id="night-9")
    real_process = runner.process_shard
    shards_done = []

    plan = planning.plan_run(config, runner.cached_reader(config.model).fingerprint)
    assert len(plan.shards) >= 2
    written_before_crash = len(plan.shards[0].photos)

    def crashing(*args, **kwargs):
        if len(shards_done) == 1:
            raise RuntimeError("worker lost")
        shards_done.append(1)
        return real_process(*args, **kwargs)

    monkeypatch.setattr(runner, "process_shard", crashing)
    with pytest.raises(RuntimeError, match="worker lost"):
        run_read(config, progress=False)
    assert len(rows(config)) == written_before_crash  # the first shard was written whole before the crash
    monkeypatch.setattr(runner, "process_shard", real_process)
    manifest = run_read(config, progress=False)  # the same night again
    table = rows(config)
    assert (manifest["already_done"], manifest["processed"]) == (written_before_crash, 12 - written_before_crash)
    uris = [row["image_uri"] for row in table]
    assert len(uris) == len(set(uris)) == 12  # no duplicates, no gaps


def test_a_transient_storage_error_is_read_again_the_next_night(s3_bucket, monkeypatch):
    """Night 1: one photo's reads fail (connection reset) and another's object is gone by the time it is fetched.
    The first is a `storage_error` row the next nights read again, up to `transient_retries`; the second is final."""
    fs, bucket = s3_bucket
    for meter in ("MTR-1", "MTR-2", "MTR-3"):
        fs.pipe_file(f"{bucket}/in/{meter}/20260301T120000.jpg", meter_jpeg("00001.0", seed=len(meter)))
    import s3fs

    real_cat = s3fs.S3FileSystem.cat_file
    failing = {"MTR-1": ConnectionError("connection reset by peer"), "MTR-2": FileNotFoundError("gone")}

    def faulty_cat(self, path, *args, **kwargs):
        for meter, error in failing.items():
            if f"/{meter}/" in path:
                raise error
        return real_cat(self, path, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "cat_file", faulty_cat)
    s3fs.S3FileSystem.clear_instance_cache()  # instances made earlier carry their own sync `cat_file`
    monkeypatch.setattr("meterread.storage.retry_pause", lambda _: None)
    config = ReadConfig(
        source=f"s3://{bucket}/in", output=f"s3://{bucket}/out", model=ModelSpec(base="x"), storage_attempts=2
    ).validate()

    def night(texts, **overrides):
        monkeypatch.setattr(runner, "cached_reader", lambda spec: ScriptedReader(texts))
        return run_read(config.replace(**overrides), progress=False)

    assert night(["100"])["processed"] == 3
    by_meter = {row["meter_id"]: row for row in rows(config)}
    transient, gone = by_meter["MTR-1"], by_meter["MTR-2"]
    assert transient["status"] == "error" and transient["reason_codes"] == ["storage_error"]
    assert transient["reasons"][0].startswith("storage_error: could not read object after retries: ConnectionError")
    assert gone["status"] == "error" and gone["reason_codes"] == ["unreadable"]  # final at once: not storage_error
    assert gone["reasons"][0] == "could not read object: FileNotFoundError: gone"  # not retried: no "after retries"

    failing.pop("MTR-1")  # the storage is healthy again
    second = night(["101"])
    assert (second["processed"], second["already_done"]) == (1, 2)  # MTR-1 again; the missing object is final
    current = history.current_rows(pa.Table.from_pylist(rows(config)))
    assert {row["meter_id"]: row["status"] for row in current.to_pylist()}["MTR-1"] == "accepted"
    assert night([])["processed"] == 0

    failing["MTR-1"] = TimeoutError("read timed out")  # a new version of the photo that keeps failing
    fs.pipe_file(f"{bucket}/in/MTR-1/20260301T120000.jpg", meter_jpeg("00002.0", seed=9))
    nights = [night([], transient_retries=1) for _ in range(3)]
    assert [n["processed"] for n in nights] == [1, 1, 0]  # the first try and one retry, then final
    last = max((row for row in rows(config) if row["meter_id"] == "MTR-1"), key=lambda row: row["processed_at"])
    assert last["reason_codes"] == ["storage_error", "retries_exhausted"] and "final after 2 runs" in last["reasons"][0]
    monkeypatch.setattr(s3fs.S3FileSystem, "cat_file", real_cat)
    s3fs.S3FileSystem.clear_instance_cache()
