"""Photo key convention: object key -> (meter_id, captured_at). Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

# `{prefix}/{meter_id}/{YYYYmmddTHHMMSS}.{jpg|jpeg|png}`; the prefix may be empty or several folders deep.
DEFAULT_KEY_PATTERN = r"(?:^|/)(?P<meter_id>[^/]+)/(?P<timestamp>\d{8}T\d{6}Z?)\.(?:jpe?g|png)$"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class KeyFacts:
    """What a photo's key says about it. `reason` explains a key that does not follow the layout."""

    meter_id: str | None
    captured_at: datetime | None
    reason: str | None = None


def compile_key_pattern(pattern: str = DEFAULT_KEY_PATTERN) -> re.Pattern[str]:
    """Compile a key regex; it must define the named group `meter_id` (and may define `timestamp`)."""
    compiled = re.compile(pattern, re.IGNORECASE)
    if "meter_id" not in compiled.groupindex:
        raise ValueError(f"key pattern {pattern!r} must define a named group (?P<meter_id>...)")
    return compiled


def is_photo_key(key: str) -> bool:
    """True for keys whose suffix is a photo format we read (case-insensitive)."""
    return key.lower().endswith(PHOTO_SUFFIXES)


def parse_timestamp(text: str) -> datetime:
    """`20240131T235959` (optionally with a trailing Z) -> aware UTC datetime."""
    return datetime.strptime(text.rstrip("Zz"), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)


def parse_key(key: str, pattern: re.Pattern[str]) -> KeyFacts:
    """Derive meter id and capture time from a key; never raises, says why in `reason`."""
    match = pattern.search(key)
    if match is None:
        return KeyFacts(None, None, f"key does not match the photo layout {pattern.pattern!r}")
    meter_id = match.group("meter_id")
    stamp = match.groupdict().get("timestamp")
    if not stamp:
        return KeyFacts(meter_id, None)
    try:
        return KeyFacts(meter_id, parse_timestamp(stamp))
    except ValueError:
        return KeyFacts(meter_id, None, f"timestamp {stamp!r} in key is not a valid YYYYmmddTHHMMSS time")


def check_safe_name(name: str, what: str) -> str:
    """Names used in output paths must be plain (no `/`, `..`, spaces): object keys never escape OUTPUT."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError(f"{what} {name!r} must match {_SAFE_NAME.pattern} (no slashes or '..')")
    return name
