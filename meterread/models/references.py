"""Model references: `registry://URL` (a registry's current version) and `registry://URL@VERSION`. Pure, no I/O;
`training.registry` resolves them against storage."""

from __future__ import annotations

import re

REFERENCE_SCHEME = "registry://"
VERSION_NAME = re.compile(r"v\d{8}T\d{12}Z")  # what `publish` names a version: vYYYYmmddTHHMMSSffffffZ


def parse_reference(value: str | None) -> tuple[str, str | None] | None:
    """(registry URL, version or None) of a model reference `registry://URL` or `registry://URL@VERSION`; None for
    anything else (hub id, folder, s3:// URL). Raises ValueError for `registry://` without a URL."""
    if not value or not value.startswith(REFERENCE_SCHEME):
        return None
    url = value[len(REFERENCE_SCHEME) :]
    head, at, tail = url.rpartition("@")
    version = tail if at and VERSION_NAME.fullmatch(tail) else None
    url = (head if version else url).rstrip("/")
    if not url:
        raise ValueError(
            f"model reference {value!r} names no registry: registry://s3://bucket/registry or registry:///abs/dir"
        )
    return url, version


def model_reference(registry: str, version: str | None = None) -> str:
    """The reference to `registry`'s current version, or to its `version`."""
    return f"{REFERENCE_SCHEME}{registry.rstrip('/')}" + (f"@{version}" if version else "")


def check_reference(base: str, adapter: str | None, reference: str | None) -> None:
    """Refuse a malformed model reference (ValueError): `registry://` without a URL, an adapter beside a reference
    (the version names its own), a reference in `adapter`, or a `reference` that names no fixed version."""
    if parse_reference(base) is not None and adapter:
        raise ValueError(f"adapter {adapter!r} beside {base!r}: a registry version names its own adapter")
    if parse_reference(adapter) is not None:
        raise ValueError(f"adapter {adapter!r}: give a registry reference as base, not as adapter")
    if reference is not None and (parse_reference(reference) or (None, None))[1] is None:
        raise ValueError(f"reference {reference!r} must name a version: registry://URL@VERSION")
