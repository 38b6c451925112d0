from datetime import datetime, timezone

import pytest

from meterread.keys import DEFAULT_KEY_PATTERN, compile_key_pattern, is_photo_key, parse_key

PATTERN = compile_key_pattern(DEFAULT_KEY_PATTERN)
UTC = timezone.utc


@pytest.mark.parametrize(
    ("key", "meter_id", "captured_at", "has_reason"),
    [
        ("MTR-1/20260131T235959.jpg", "MTR-1", datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC), False),
        ("site/a/MTR-1/20260131T235959.JPEG", "MTR-1", datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC), False),
        ("MTR 7/20260101T000000Z.png", "MTR 7", datetime(2026, 1, 1, tzinfo=UTC), False),
        ("MTR-1/20261332T000000.jpg", "MTR-1", None, True),  # month 13
        ("loose-photo.jpg", None, None, True),
        ("MTR-1/yesterday.jpg", None, None, True),
    ],
)
def test_parse_key_table(key, meter_id, captured_at, has_reason):
    facts = parse_key(key, PATTERN)
    assert (facts.meter_id, facts.captured_at, facts.reason is not None) == (meter_id, captured_at, has_reason)


def test_custom_pattern_without_timestamp():
    pattern = compile_key_pattern(r"^(?P<meter_id>\d+)_.*\.jpg$")
    facts = parse_key("0042_front.jpg", pattern)
    assert facts.meter_id == "0042" and facts.captured_at is None and facts.reason is None


def test_pattern_must_name_meter_id():
    with pytest.raises(ValueError, match="meter_id"):
        compile_key_pattern(r"(?P<meter>[^/]+)/")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("a.jpg", True),
        ("a.JPG", True),
        ("a.png", True),
        ("a.txt", False),
        ("a.jpg.bak", False),
        ("annotations.jsonl", False),
    ],
)
def test_is_photo_key(key, expected):
    assert is_photo_key(key) is expected
