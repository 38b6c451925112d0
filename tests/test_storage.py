import pytest

from meterread.storage import env_storage_options, list_photos, read_bytes, resolve, with_retries, write_bytes


def test_list_photos_sorted_with_keys_relative_to_root(tmp_path):
    for key in ["b/20260101T000000.jpg", "a/20260101T000000.PNG", "a/readme.txt", "a/sub/x.jpeg"]:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"x")
    fs, root = resolve(str(tmp_path))
    photos = list_photos(fs, root)
    assert [p.key for p in photos] == ["a/20260101T000000.PNG", "a/sub/x.jpeg", "b/20260101T000000.jpg"]
    assert all(p.uri.startswith("file://") and p.size == 1 and p.etag for p in photos)


def test_listing_a_missing_root_is_empty(tmp_path):
    fs, root = resolve(str(tmp_path / "none"))
    assert list_photos(fs, root) == []


DATED_KEYS = [
    "2026-11-25/M1/20261125T200000.jpg",
    "2026-11-26/M1/20261126T200000.jpg",
    "2026-11-26/M2/20261126T210000.jpg",
    "2026-11-27/M1/20261127T200000.jpg",
]


def test_listing_only_date_prefixes_lists_only_their_folders(tmp_path, monkeypatch):
    for key in DATED_KEYS:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"x")
    fs, root = resolve(str(tmp_path))
    listed_folders = []
    real_find = type(fs).find
    monkeypatch.setattr(
        type(fs), "find", lambda self, path, **kw: listed_folders.append(path) or real_find(self, path, **kw)
    )
    photos = list_photos(fs, root, prefixes=("2026-11-26/", "2026-11-27/M1/2026"))
    assert [p.key for p in photos] == DATED_KEYS[1:]
    assert listed_folders == [f"{root}/2026-11-26", f"{root}/2026-11-27/M1"]  # never the whole bucket


def test_listing_after_a_marker_starts_the_s3_listing_there(s3_bucket, monkeypatch):
    fs, bucket = s3_bucket
    for key in DATED_KEYS + ["2026-11-26/M3/20261126T220000.jpg"]:
        fs.pipe_file(f"{bucket}/in/{key}", b"x")
    source_fs, root = resolve(f"s3://{bucket}/in")
    returned = []
    real_call = type(source_fs).call_s3

    def spy(self, method, *args, **kwargs):
        result = real_call(self, method, *args, **kwargs)
        returned.extend(item["Key"] for item in result.get("Contents", []) if method == "list_objects_v2")
        return result

    monkeypatch.setattr(type(source_fs), "call_s3", spy)
    photos = list_photos(source_fs, root, after=DATED_KEYS[1])
    assert [p.key for p in photos] == sorted(DATED_KEYS[2:] + ["2026-11-26/M3/20261126T220000.jpg"])
    assert all(p.etag and p.size == 1 and p.modified_at for p in photos)
    assert f"in/{DATED_KEYS[0]}" not in returned and f"in/{DATED_KEYS[1]}" not in returned  # never transferred
    both = list_photos(source_fs, root, prefixes=("2026-11-26/",), after=DATED_KEYS[1])
    assert [p.key for p in both] == ["2026-11-26/M2/20261126T210000.jpg", "2026-11-26/M3/20261126T220000.jpg"]


def test_transient_errors_are_retried_then_raised():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset by peer")
        return "ok"

    assert with_retries(flaky, attempts=4, sleep=lambda _: None) == "ok" and len(calls) == 3
    with pytest.raises(ConnectionError):
        with_retries(lambda: (_ for _ in ()).throw(ConnectionError("down")), attempts=2, sleep=lambda _: None)


def test_missing_objects_are_not_retried():
    calls = []

    def missing():
        calls.append(1)
        raise FileNotFoundError("gone")

    with pytest.raises(FileNotFoundError):
        with_retries(missing, attempts=4, sleep=lambda _: None)
    assert len(calls) == 1


def test_corrupt_data_is_not_retried(tmp_path):
    """A corrupt Parquet file raises ArrowInvalid (a ValueError) on every try: it fails at once, not four times."""
    import pyarrow.parquet as pq

    (tmp_path / "torn.parquet").write_bytes(b"PAR1 not really parquet")
    calls = []

    def read():
        calls.append(1)
        return pq.read_table(tmp_path / "torn.parquet")

    with pytest.raises(ValueError):
        with_retries(read, attempts=4, sleep=lambda _: None)
    assert len(calls) == 1


def test_endpoint_comes_from_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    assert env_storage_options("s3://b/k")["endpoint_url"] == "http://127.0.0.1:9"
    assert env_storage_options("/local/path") == {}


def test_write_bytes_replaces_whole_files(tmp_path):
    fs, root = resolve(str(tmp_path))
    write_bytes(fs, f"{root}/d/f.bin", b"one")
    write_bytes(fs, f"{root}/d/f.bin", b"two")
    assert (tmp_path / "d" / "f.bin").read_bytes() == b"two"
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["f.bin"]


def test_a_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    fs, root = resolve(str(tmp_path))
    write_bytes(fs, f"{root}/d/f.bin", b"old")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("meterread.storage.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_bytes(fs, f"{root}/d/f.bin", b"new")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["f.bin"]  # no partial .tmp beside it
    assert (tmp_path / "d" / "f.bin").read_bytes() == b"old"


ODD_KEYS = [
    "MTR-3/x?versionId=1.jpg",
    "site::a/MTR-1/20260301T120000.jpg",
    "site?versionId=2/MTR-2/20260301T120000.jpg",
]


def test_s3_keys_that_fsspec_would_misparse_are_read_as_they_are(s3_bucket):
    fs, bucket = s3_bucket
    for index, key in enumerate(ODD_KEYS):  # s3fs could not even write these keys
        fs.call_s3("put_object", Bucket=bucket, Key=f"in/{key}", Body=f"photo {index}".encode())
    source_fs, root = resolve(f"s3://{bucket}/in")
    photos = list_photos(source_fs, root)
    assert [photo.key for photo in photos] == sorted(ODD_KEYS)
    for photo in photos:
        expected = f"photo {ODD_KEYS.index(photo.key)}".encode()
        assert read_bytes(source_fs, photo.path, attempts=1) == expected, photo.key


def test_one_retry_layer_for_s3(s3_endpoint, monkeypatch):
    """The S3 client is set not to retry (botocore standard mode, one attempt; s3fs's own loop off), so one failing
    write is tried exactly STORAGE_ATTEMPTS times by `with_retries`; Prefect storage tasks add no retries."""
    from meterread import storage
    from meterread.storage import S3_CLIENT_RETRIES, STORAGE_ATTEMPTS

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    fs, root = resolve("s3://retry-layer/out")
    assert fs.config_kwargs["retries"] == S3_CLIENT_RETRIES == {"mode": "standard", "total_max_attempts": 1}
    assert fs.retries == 1
    tries = []
    monkeypatch.setattr(
        fs,
        "pipe_file",
        lambda path, data: tries.append(path) or (_ for _ in ()).throw(ConnectionError("reset")),
    )
    pauses = []
    monkeypatch.setattr(storage, "retry_pause", pauses.append)  # the one wait between attempts, not time.sleep
    with pytest.raises(ConnectionError):
        write_bytes(fs, f"{root}/x.json", b"{}")
    assert len(tries) == STORAGE_ATTEMPTS == 4 and len(pauses) == 3


def test_prefect_storage_tasks_do_not_retry():
    import flows.fanout as fanout
    import flows.finetune as finetune
    import flows.nightly_read as nightly

    tasks = [nightly.list_source, nightly.plan_run, nightly.renew_lease, nightly.write_shard, nightly.finish_run]
    tasks += [nightly.load_context, fanout.plan_night, fanout.shard_result, fanout.gather, finetune.publish]
    assert {task.name: task.retries for task in tasks} == {task.name: 0 for task in tasks}


def test_credentials_from_a_secret_block_are_storage_options_not_environment(s3_endpoint, monkeypatch):
    import os

    import s3fs

    from meterread import storage

    monkeypatch.setattr(storage, "_S3_CREDENTIALS", {})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    storage.use_s3_credentials(
        {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "endpoint_url": s3_endpoint}
    )
    options = env_storage_options("s3://b/k")
    assert (options["key"], options["secret"], options["endpoint_url"]) == ("testing", "testing", s3_endpoint)
    assert os.environ["AWS_ACCESS_KEY_ID"] == "from-env"  # the environment is left alone
    s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="testing", secret="testing").mkdir("creds-bucket")
    fs, root = resolve("s3://creds-bucket/out")
    write_bytes(fs, f"{root}/x.json", b"{}")  # through the options the block gave
    assert fs.cat_file(f"{root}/x.json") == b"{}"
    with pytest.raises(ValueError, match="unknown S3 credential field"):
        storage.use_s3_credentials({"aws_acess_key_id": "typo"})


def test_a_photo_added_beside_listed_ones_is_listed_and_read_the_next_night(s3_bucket, s3_endpoint, monkeypatch):
    """s3fs answers `info` (and so `cat_file`, `exists`) from a cached listing of the parent folder; a night must
    see an object an earlier night's listing did not (it once became a FileNotFoundError row)."""
    fs, bucket = s3_bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    fs.pipe_file(f"{bucket}/in/M1/20260101T000000.jpg", b"night 1")
    source_fs, root = resolve(f"s3://{bucket}/in")
    assert [p.key for p in list_photos(source_fs, root)] == ["M1/20260101T000000.jpg"]
    fs.pipe_file(f"{bucket}/in/M1/20260102T000000.jpg", b"night 2")
    photos = list_photos(source_fs, root)
    assert [read_bytes(source_fs, photo.path, attempts=1) for photo in photos] == [b"night 1", b"night 2"]
    assert source_fs.exists(f"{root}/M1/20260102T000000.jpg")
