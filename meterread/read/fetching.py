"""Fetching and preprocessing one photo: every failure becomes the row's reason, never an exception."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from meterread.config import ReadConfig
from meterread.preprocess import DecodeError, InputLayout, Preprocessed, preprocess_photo
from meterread.read.history import (
    RETRIES_EXHAUSTED,
    STORAGE_ERROR,
)
from meterread.read.planning import Photo
from meterread.storage import (
    is_retried,
    is_transient,
    read_bytes,
    resolve,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fetched:
    """A photo after fetch + preprocess: either `image` or `error` (with its machine-readable `codes`)."""

    photo: Photo
    content_sha256: str | None
    image: Preprocessed | None
    error: str | None
    codes: tuple[str, ...] = ()


def fetch_and_preprocess(
    photo: Photo, image_size: int, config: ReadConfig, layout: InputLayout = InputLayout()
) -> Fetched:
    """Read bytes (retried) and preprocess; every failure becomes a reason, never an exception.

    The photo is read by its path on SOURCE's filesystem: its URI is not re-parsed, as fsspec would take `::` in a
    key for a URL chain."""
    try:
        fs, _ = resolve(config.source)
    except Exception as error:  # noqa: BLE001 - any storage failure becomes the row's reason
        return storage_failure(photo, error, config.transient_retries, attempts=1)
    try:
        data = read_bytes(fs, photo.path, attempts=config.storage_attempts)
    except Exception as error:  # noqa: BLE001 - any storage failure becomes the row's reason
        return storage_failure(photo, error, config.transient_retries, config.storage_attempts)
    digest = hashlib.sha256(data).hexdigest()
    try:
        return Fetched(photo, digest, preprocess_photo(data, image_size, config.max_pixels, layout), None)
    except DecodeError as error:
        return Fetched(photo, digest, None, str(error))
    except Exception as error:  # noqa: BLE001 - OpenCV can raise cv2.error on hostile input
        return Fetched(photo, digest, None, f"could not decode image: {type(error).__name__}: {error}")


def storage_failure(photo: Photo, error: Exception, transient_retries: int, attempts: int) -> Fetched:
    """A photo whose bytes could not be read. A transient failure (network, timeout, throttling, permissions) is
    coded STORAGE_ERROR: the ledger does not count it as done, so the next `transient_retries` runs try again; the
    last one allowed adds RETRIES_EXHAUSTED and stays. A missing object is final at once. The reason says "after
    retries" only where the read was tried more than once (`attempts`; never for a missing object, a permission
    or a bad call, which `with_retries` does not retry)."""
    retried = " after retries" if attempts > 1 and is_retried(error) else ""
    reason = f"could not read object{retried}: {type(error).__name__}: {error}"
    if not is_transient(error):
        return Fetched(photo, None, None, reason)
    attempt = photo.transient_failures + 1
    if attempt > transient_retries:
        note = f"final after {attempt} runs (transient_retries={transient_retries})"
        return Fetched(photo, None, None, f"{STORAGE_ERROR}: {reason}; {note}", (STORAGE_ERROR, RETRIES_EXHAUSTED))
    note = f"the next run tries again (attempt {attempt} of {transient_retries + 1})"
    return Fetched(photo, None, None, f"{STORAGE_ERROR}: {reason}; {note}", (STORAGE_ERROR,))


def is_unchanged(item: Fetched) -> bool:
    """The bytes equal a version of this photo the output already has a row for (a `touch`, a copy over itself):
    new etag, same content, no new reading and no row. Known only after the fetch, so it is skipped before
    inference."""
    return item.content_sha256 is not None and item.content_sha256 in item.photo.known_sha256


def batched(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def skip_unchanged(item: Fetched) -> bool:
    if is_unchanged(item):
        log.info(
            "%s: same content as its row already read (new etag %s only): not read again",
            item.photo.uri,
            item.photo.etag,
        )
        return True
    return False
