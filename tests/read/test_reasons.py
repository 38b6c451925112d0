"""Reason codes: the closed enum, every reason text the read path produces has a code, rows of a run carry them."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pytest

from meterread.keys import DEFAULT_KEY_PATTERN
from meterread.parse import ParsedReading, parse_reading
from meterread.preprocess import DecodeError, preprocess_photo
from meterread.read import fetching, planning, reasons, runner, sink
from meterread.read.history import RETRIES_EXHAUSTED, STORAGE_ERROR, MeterHistory
from meterread.read.validate import MeterProfile, PriorReading, Rules, check_history, validate_reading
from meterread.storage import ObjectInfo
from tests.factories import BAD_FILES, ScriptedReader, meter_jpeg, png_bytes
from tests.read.test_runner import config_for

T0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def test_the_enum_is_closed_and_pinned():
    assert reasons.REASON_CODES == (
        "unparsable", "format", "low_confidence", "implausible_time", "future_timestamp", "out_of_order",
        "same_instant_conflict", "decrease", "rate_exceeded", "exceeds_later_reading", "later_reading_inconsistent",
        "rollover", "misread_reference", "misread_jump",
        "off_layout_key", "bad_key_timestamp", "non_utf8_key", "unreadable", "storage_error", "retries_exhausted",
        "not_an_image", "corrupt_image", "image_too_large", "image_too_small", "other",
    )  # fmt: skip
    assert (reasons.STORAGE_ERROR, reasons.RETRIES_EXHAUSTED) == (STORAGE_ERROR, RETRIES_EXHAUSTED)


def verdict_reasons(text, confidence=0.99, captured_at=T0, previous=None, profile=None, earlier=None, following=None):
    parsed = text if isinstance(text, ParsedReading) else parse_reading(text)
    verdict = validate_reading(
        parsed, confidence, captured_at, previous, profile, Rules(), earlier, T0 + DAY, following=following
    )
    return verdict.reasons


def decode_error(data: bytes, max_pixels: int = 64_000_000) -> str:
    with pytest.raises(DecodeError) as error:
        preprocess_photo(data, 64, max_pixels)
    return str(error.value)


def photo(key: str) -> planning.Photo:
    return planning.photo_from_object(ObjectInfo(f"file:///b/{key}", f"/b/{key}", key, 1, "e", T0), DEFAULT_KEY_PATTERN)


PREVIOUS = PriorReading(Decimal(100), T0 - DAY)
WIDE = MeterProfile(digits=3, decimals=0, max_rate_per_day=Decimal(50))
PRODUCED = [  # (reason texts as the code produces them, expected codes)
    (verdict_reasons("abc"), ["unparsable"]),
    (verdict_reasons(None), ["unparsable"]),
    (verdict_reasons(""), ["unparsable"]),
    (verdict_reasons(ParsedReading(None, error=sink.reading_problem(Decimal("1e30")))), ["unparsable"]),
    (verdict_reasons(ParsedReading(Decimal(-1), 1, 0)), ["format"]),
    (verdict_reasons("12.5", profile=WIDE), ["format"]),  # wrong integer digits and decimals
    (verdict_reasons("100", confidence=0.1), ["low_confidence"]),
    (verdict_reasons("100", confidence=None), ["low_confidence"]),
    (verdict_reasons("100", captured_at=datetime(1999, 1, 1, tzinfo=timezone.utc)), ["implausible_time"]),
    (verdict_reasons("100", captured_at=T0 + 5 * DAY), ["future_timestamp"]),
    (verdict_reasons("100", captured_at=T0 - 2 * DAY, previous=PREVIOUS), ["out_of_order"]),
    (verdict_reasons("101", captured_at=T0 - DAY, previous=PREVIOUS), ["same_instant_conflict"]),
    (verdict_reasons("90", previous=PREVIOUS), ["decrease"]),
    (verdict_reasons("190", previous=PREVIOUS, profile=WIDE), ["rate_exceeded"]),
    (verdict_reasons("110", following=PriorReading(Decimal(105), T0 + DAY / 2)), ["exceeds_later_reading"]),
    (verdict_reasons("110", following=PriorReading(Decimal(190), T0 + DAY), profile=WIDE),
     ["later_reading_inconsistent"]),
    (verdict_reasons("010", previous=PriorReading(Decimal(990), T0 - DAY), profile=WIDE), ["rollover"]),
    (check_history(Decimal(110), T0, PriorReading(Decimal(900), T0 - DAY), None, PREVIOUS)[1], ["misread_reference"]),
    ([photo("loose.jpg").key_problem], ["off_layout_key"]),
    ([photo("M1/20261399T000000.jpg").key_problem], ["bad_key_timestamp"]),
    ([decode_error(BAD_FILES["zero-byte"][0])], ["not_an_image"]),
    ([decode_error(BAD_FILES["text-as-jpg"][0])], ["not_an_image"]),
    ([decode_error(BAD_FILES["corrupt"][0])], ["corrupt_image"]),
    ([decode_error(meter_jpeg()[:-200])], ["corrupt_image"]),
    ([decode_error(meter_jpeg(), max_pixels=100)], ["image_too_large"]),
    ([decode_error(png_bytes(np.zeros((8, 8, 3), np.uint8)))], ["image_too_small"]),
    ([fetching.storage_failure(photo("M1/20260301T000000.jpg"), FileNotFoundError("gone"), 3, 4).error],
     ["unreadable"]),
    ([fetching.storage_failure(photo("M1/20260301T000000.jpg"), TimeoutError("slow"), 3, 4).error], ["storage_error"]),
    ([fetching.storage_failure(photo("M1/20260301T000000.jpg"), PermissionError("denied"), 3, 4).error],
     ["storage_error"]),
    (["could not read object after retries: FileNotFoundError: gone"], ["unreadable"]),  # rows written before 11-29
    ([fetching.storage_failure(replace(photo("M1/20260301T000000.jpg"), transient_failures=3), TimeoutError("slow"),
                               3, 4).error], ["storage_error", "retries_exhausted"]),
    (["key does not match the photo layout 'x'; object key is not valid UTF-8; recorded percent-encoded"],
     ["off_layout_key", "non_utf8_key"]),
]  # fmt: skip


@pytest.mark.parametrize(("texts", "codes"), PRODUCED)
def test_every_reason_the_code_produces_has_its_code(texts, codes):
    assert texts, "the case produced no reason"
    assert reasons.reason_codes(texts) == codes, texts


def test_an_unknown_text_is_coded_other():
    assert reasons.codes_for("something new") == ("other",)


def test_rows_of_a_run_carry_codes_beside_their_reasons(tmp_path):
    bucket = tmp_path / "bucket"
    (bucket / "MTR-1").mkdir(parents=True)
    for day in (1, 2, 3, 4):
        (bucket / "MTR-1" / f"2026030{day}T120000.jpg").write_bytes(meter_jpeg(seed=day))
    (bucket / "MTR-1" / "20260305T120000.jpg").write_bytes(b"")
    config = config_for(tmp_path, "x")
    shard = planning.Shard("s1", tuple(planning.list_source(config)))
    rows = runner.process_shard(config, ScriptedReader(["100", "900", "105", "abc"]), shard, "r", MeterHistory())
    assert {row["image_uri"].rsplit("/", 1)[-1]: row["reason_codes"] for row in rows} == {
        "20260301T120000.jpg": [],
        "20260302T120000.jpg": ["misread_jump"],
        "20260303T120000.jpg": ["misread_reference"],
        "20260304T120000.jpg": ["unparsable"],
        "20260305T120000.jpg": ["not_an_image"],
    }
    assert all(row["reasons"] for row in rows if row["reason_codes"])
    assert sink.rows_to_table(rows).column("reason_codes").null_count == 0


def test_a_photo_off_the_layout_is_coded(tmp_path):
    (tmp_path / "bucket").mkdir()
    (tmp_path / "bucket" / "loose.jpg").write_bytes(meter_jpeg())
    config = config_for(tmp_path, "x")
    shard = planning.Shard("s1", tuple(planning.list_source(config)))
    (row,) = runner.process_shard(config, ScriptedReader(["100"]), shard, "r", MeterHistory())
    assert (row["status"], row["reason_codes"]) == ("flagged", ["off_layout_key"])


def test_a_failure_reason_says_after_retries_only_when_the_read_was_retried():
    texts = {
        type(e).__name__: fetching.storage_failure(photo("M1/20260301T000000.jpg"), e, 3, attempts=4).error
        for e in (TimeoutError("slow"), FileNotFoundError("gone"), PermissionError("denied"), ValueError("bad call"))
    }
    assert "after retries" in texts["TimeoutError"]
    assert not any("after retries" in texts[name] for name in ("FileNotFoundError", "PermissionError", "ValueError"))
    once = fetching.storage_failure(photo("M1/20260301T000000.jpg"), TimeoutError("slow"), 3, attempts=1).error
    assert once == "storage_error: could not read object: TimeoutError: slow; the next run tries again (attempt 1 of 4)"
