import pytest

from meterread.storage import env_storage_options, list_photos, resolve, with_retries, write_bytes


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


def test_endpoint_comes_from_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    assert env_storage_options("s3://b/k") == {"endpoint_url": "http://127.0.0.1:9"}
    assert env_storage_options("/local/path") == {}


def test_write_bytes_replaces_whole_files(tmp_path):
    fs, root = resolve(str(tmp_path))
    write_bytes(fs, f"{root}/d/f.bin", b"one")
    write_bytes(fs, f"{root}/d/f.bin", b"two")
    assert (tmp_path / "d" / "f.bin").read_bytes() == b"two"
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["f.bin"]
