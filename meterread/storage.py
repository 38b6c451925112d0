"""Object storage through fsspec: list photos, read bytes with retries, write files atomically.

S3 endpoints and credentials come from the usual environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, profiles) or explicit `storage_options`; they are never logged.

Retries: one layer. Every storage call of a run goes through `with_retries` (jittered exponential backoff,
`STORAGE_ATTEMPTS` attempts, missing objects never retried); the S3 client below it is set not to retry
(`S3_CLIENT_RETRIES`, botocore's standard mode with one attempt, and s3fs's own loop off), and Prefect tasks do not
retry storage errors on top. One failing S3 write is tried `STORAGE_ATTEMPTS` times, not 4 x 4 x 5.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar

import fsspec
from fsspec import AbstractFileSystem

from meterread.keys import is_photo_key

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors worth retrying: network and server trouble. Missing objects and bad permissions are final.
STORAGE_ATTEMPTS = 4  # tries of one storage call (`with_retries`), the only retry layer
S3_CLIENT_RETRIES = {"mode": "standard", "total_max_attempts": 1}  # botocore: one attempt, no retries
_FINAL_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
# Retrying cannot fix bad bytes or a bad call either: Arrow's ArrowInvalid (a corrupt or truncated Parquet file, a
# schema clash) is a ValueError, ArrowTypeError a TypeError. Network errors arrive as other types; a truncated read
# would only be transient if an object changed while read, and this project writes every object once, atomically.
_BAD_DATA_ERRORS = (ValueError, TypeError)
# A fetch that failed with one of these is final across runs too: the object is not there (or not a file). Any
# other failure (network, timeout, throttling, server errors, permissions) may pass: later runs try again.
_ABSENT_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError)
S3_VERSION_MARKER = "?versionId="  # s3fs reads what follows as a version id, even inside a listed key


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object. `key` is relative to the listed root; `uri` is absolute with its protocol."""

    uri: str
    path: str
    key: str
    size: int
    etag: str
    modified_at: datetime | None


_S3_CREDENTIALS: dict = {}  # storage options from `use_s3_credentials` (a Prefect Secret block), never logged
_CREDENTIAL_OPTIONS = {
    "aws_access_key_id": "key",
    "aws_secret_access_key": "secret",
    "aws_session_token": "token",
    "endpoint_url": "endpoint_url",
}


def use_s3_credentials(values: dict) -> None:
    """Use these S3 credentials (aws_access_key_id, aws_secret_access_key, optional aws_session_token,
    endpoint_url, region) as storage options for every s3:// URL this process resolves, instead of the
    environment's. Unknown keys are refused (a typo must not silently fall back to other credentials)."""
    unknown = sorted(set(values) - set(_CREDENTIAL_OPTIONS) - {"region"})
    if unknown:
        raise ValueError(f"unknown S3 credential field(s) {unknown}; use {sorted(_CREDENTIAL_OPTIONS)} and region")
    options = {option: values[name] for name, option in _CREDENTIAL_OPTIONS.items() if values.get(name)}
    if values.get("region"):
        options["client_kwargs"] = {"region_name": values["region"]}
    _S3_CREDENTIALS.clear()
    _S3_CREDENTIALS.update(options)


def env_storage_options(url: str) -> dict:
    """Storage options for `url`: the S3 client's retry mode (`S3_CLIENT_RETRIES`), the environment's endpoint
    override (MinIO, moto …), and credentials given to `use_s3_credentials`."""
    if not url.startswith(("s3://", "s3a://")):
        return {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    # no listings cache: a night must see objects added beside ones an earlier night listed (s3fs answers `info`
    # and `exists` from a cached parent listing, and only forgets the listed folder itself, not its subfolders)
    options: dict = {"config_kwargs": {"retries": dict(S3_CLIENT_RETRIES)}, "use_listings_cache": False}
    options = {**options, "endpoint_url": endpoint} if endpoint else options
    return {**options, **_S3_CREDENTIALS}


def resolve(url: str, storage_options: dict | None = None) -> tuple[AbstractFileSystem, str]:
    """fsspec URL (or local path) -> (filesystem, root path without protocol, no trailing slash). Explicit
    `storage_options` (credentials, endpoint) win over the environment's."""
    options = {**env_storage_options(url), **(storage_options or {})}
    fs, root = fsspec.core.url_to_fs(url, **options)
    if "s3" in _protocols(fs):
        fs.retries = 1  # s3fs's own retry loop (timeouts, dropped connections): `with_retries` is the one layer
    return fs, root.rstrip("/")


def relative_path(root: str, path: str) -> str:
    """`path` relative to `root` (no leading slash); `path` itself when it is not under `root`."""
    return path[len(root) :].lstrip("/") if path.startswith(root) else path


def to_uri(fs: AbstractFileSystem, path: str) -> str:
    """Absolute URI of `path` on `fs` (`s3://bucket/key`, `file:///abs/path`), always valid UTF-8: bytes of a name
    that is not UTF-8 (kept by Python as surrogate escapes) are percent-encoded."""
    return printable_key(fs.unstrip_protocol(path))


def printable_key(text: str) -> str:
    """`text` if it is valid UTF-8, else its undecodable bytes percent-encoded (`caf%E9.jpg`)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
        return "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in raw) if not _is_utf8(raw) else raw.decode()


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _protocols(fs: AbstractFileSystem) -> tuple[str, ...]:
    return fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)


def is_local(fs: AbstractFileSystem) -> bool:
    return "file" in _protocols(fs)


def object_etag(info: dict) -> str:
    """An object's ETag (S3) or size-mtime (local and other stores without one)."""
    tag = info.get("ETag") or info.get("etag")
    if tag:
        return str(tag).strip('"')
    return f"{info.get('size', 0)}-{info.get('mtime') or info.get('LastModified') or info.get('created') or 0}"


def _modified_at(info: dict) -> datetime | None:
    value = info.get("LastModified") or info.get("mtime")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    return None


def list_photos(
    fs: AbstractFileSystem, root: str, prefixes: Sequence[str] = (), after: str | None = None
) -> list[ObjectInfo]:
    """Photo objects under `root`, sorted by key (relative to `root`). Folders and non-photo suffixes are ignored.

    `prefixes`: list only keys starting with one of these (e.g. date folders `2026-11-26/`); only the folder each
    names is listed, not the whole of `root`. `after`: only keys sorting after this one (a marker: the last key of
    the previous night); on S3 the listing itself starts there (`StartAfter`)."""
    fs.invalidate_cache(root)  # listings must be fresh: a nightly run decides what is new from them
    found: dict[str, dict] = {}
    for prefix in prefixes or ("",):
        found.update(with_retries(lambda prefix=prefix: _list_under(fs, root, prefix, after)))
    photos = []
    for path, info in found.items():
        key = printable_key(relative_path(root, path))
        if info.get("type") == "directory" or not is_photo_key(key):
            continue
        if (prefixes and not any(key.startswith(prefix) for prefix in prefixes)) or (after and key <= after):
            continue
        photos.append(
            ObjectInfo(
                uri=to_uri(fs, path),
                path=path,
                key=key,
                size=int(info.get("size") or 0),
                etag=object_etag(info),
                modified_at=_modified_at(info),
            )
        )
    return sorted(photos, key=lambda item: item.key)


def _list_under(fs: AbstractFileSystem, root: str, prefix: str, after: str | None) -> dict[str, dict]:
    """path -> info of every object in the folder `prefix` names under `root` (its part up to the last `/`)."""
    folder = f"{root}/{prefix.rsplit('/', 1)[0]}" if "/" in prefix else root
    folder = folder.rstrip("/")
    if after and "s3" in _protocols(fs):
        return _list_s3_after(fs, folder, f"{root}/{after}")
    return fs.find(folder, detail=True) if fs.exists(folder) else {}


def _list_s3_after(fs: AbstractFileSystem, folder: str, marker: str) -> dict[str, dict]:
    """ListObjectsV2 of `folder` starting after the key `marker` (both bucket/key paths): the objects before the
    marker are never transferred."""
    bucket, _, prefix = folder.partition("/")
    start_after = marker.partition("/")[2]
    found: dict[str, dict] = {}
    token = None
    request = {"Bucket": bucket, "Prefix": f"{prefix}/" if prefix else ""}
    while True:
        page_request = {**request, **({"ContinuationToken": token} if token else {"StartAfter": start_after})}
        page = fs.call_s3("list_objects_v2", **page_request)  # retried as a whole by list_photos
        for item in page.get("Contents", []):
            found[f"{bucket}/{item['Key']}"] = {**item, "size": item.get("Size"), "type": "file"}
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return found


def retry_pause(seconds: float) -> None:
    """The wait between storage attempts. Tests replace this one function (never `time.sleep`, which every thread
    of the process shares, Prefect's own included)."""
    time.sleep(seconds)


def with_retries(
    action: Callable[[], T],
    attempts: int = STORAGE_ATTEMPTS,
    base_delay_s: float = 0.2,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Run `action`, retrying transient storage errors with jittered exponential backoff.

    Raises the last error once `attempts` are used; final errors (missing object, permission, corrupt data, a bad
    call: ValueError, TypeError) are not retried.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as error:  # s3fs/aiobotocore raise many types for network trouble
            if not is_retried(error) or attempt == attempts:
                raise
            delay = base_delay_s * 2 ** (attempt - 1) * (1 + random.random() / 2)
            log.warning(
                "storage error (attempt %d/%d), retrying in %.2fs: %s", attempt, attempts, delay, type(error).__name__
            )
            (sleep or retry_pause)(delay)
    raise AssertionError("unreachable")


def exists(fs: AbstractFileSystem, path: str) -> bool:
    """`fs.exists`, retried on transient errors."""
    return with_retries(lambda: fs.exists(path))


def remove(fs: AbstractFileSystem, path: str, recursive: bool = False) -> None:
    """Delete `path` (a folder with `recursive`), retried on transient errors; already absent counts as done (an
    attempt may have removed it before its reply was lost)."""

    def attempt() -> None:
        try:
            fs.rm(path, recursive=recursive)
        except FileNotFoundError:
            pass

    with_retries(attempt)


def is_retried(error: BaseException) -> bool:
    """Whether `with_retries` retries this error (so one it raised came from its last attempt)."""
    return not isinstance(error, (*_FINAL_ERRORS, *_BAD_DATA_ERRORS))


def is_transient(error: BaseException) -> bool:
    """Whether a failed read (after `with_retries`) may succeed on a later run: anything but an absent object."""
    return not isinstance(error, _ABSENT_ERRORS)


def read_bytes(fs: AbstractFileSystem, path: str, attempts: int = STORAGE_ATTEMPTS) -> bytes:
    """Whole object as bytes, retried on transient errors. An S3 key containing `?versionId=` is read as it is
    (s3fs would take the rest of the key for a version id and read another key)."""
    if S3_VERSION_MARKER in path and "s3" in _protocols(fs):
        return with_retries(lambda: _cat_s3_key_as_is(fs, path), attempts=attempts)
    return with_retries(lambda: fs.cat_file(path), attempts=attempts)


def _cat_s3_key_as_is(fs: AbstractFileSystem, path: str) -> bytes:
    """GET `bucket/key` on an s3fs filesystem without s3fs's path parsing (errors mapped by s3fs as usual)."""
    from fsspec.asyn import sync

    bucket, _, key = path.partition("/")

    async def get() -> bytes:
        response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
        async with response["Body"] as body:
            return await body.read()

    return sync(fs.loop, get)


def write_bytes(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    """Write a whole file so readers never see a partial one (temp + rename locally; one PUT on S3). A failed
    local write (a full disk) removes its temp file before the error propagates."""
    parent = path.rsplit("/", 1)[0]
    if is_local(fs):
        fs.makedirs(parent, exist_ok=True)
        temp = f"{parent}/.{uuid.uuid4().hex}.tmp"
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(temp)
            raise
        return
    with_retries(lambda: fs.pipe_file(path, data))
