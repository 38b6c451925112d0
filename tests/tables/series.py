"""A constructed readings series (two meters, two runs) and corrections of it, for the analyst-table tests."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone
from decimal import Decimal

from meterread.read import sink
from meterread.review.records import CSV, LABEL_STUDIO, Correction, corrections_to_table

P1 = datetime(2026, 3, 7, 2, 0, tzinfo=timezone.utc)  # first run
P2 = datetime(2026, 3, 8, 2, 0, tzinfo=timezone.utc)  # second run: a new version of B's 03-02 photo, a retry
DIGITS = {"A": 4}  # the meters table knows A's register width, not B's


def at(day: int, hour: int = 20) -> datetime:
    return datetime(2026, 3, day, hour, 0, tzinfo=timezone.utc)


def uri(meter: str, day: int, hour: int = 20) -> str:
    return f"file:///bucket/{meter}/202603{day:02d}T{hour:02d}0000.jpg"


def content(meter: str, day: int, hour: int = 20, etag: str = "e1") -> str:
    """A stand-in content sha256 of one version of a photo."""
    return hashlib.sha256(f"{uri(meter, day, hour)}#{etag}".encode()).hexdigest()


def row(meter, day, reading, status="accepted", hour=20, processed=P1, codes=(), confidence=0.99, etag="e1"):
    return {
        "run_id": "r1" if processed == P1 else "r2",
        "image_uri": uri(meter, day, hour),
        "image_etag": etag,
        "content_sha256": None if "storage_error" in codes else content(meter, day, hour, etag),
        "meter_id": meter,
        "captured_at": at(day, hour),
        "capture_date": date(2026, 3, day),
        "reading_text": None if reading is None else str(reading),
        "reading": None if reading is None else Decimal(reading),
        "confidence": confidence,
        "status": status,
        "reasons": [f"text for {code}" for code in codes],
        "reason_codes": list(codes),
        "processed_at": processed,
    }


JUNK_URI = "file:///bucket/junk/photo.jpg"
ROWS = [
    row("A", 1, "9990"),
    row("A", 2, "9995"),
    row("A", 3, "3", codes=["rollover"]),  # wraps past 9999: 8 used
    row("A", 5, "18", status="flagged", codes=["low_confidence"], confidence=0.3),
    row("A", 6, "15", hour=8),
    row("A", 6, "20"),  # the day's last reading; 03-04 and 03-05 have none: a gap of 3 days
    row("B", 1, "500"),
    row("B", 2, "900"),  # misread; superseded by the new content read in run 2
    row("B", 2, "510", processed=P2, etag="e2"),
    row("B", 3, "400"),  # a decrease, digits unknown
    row("B", 4, None, status="error", codes=["storage_error"], confidence=None),
    row("B", 4, "9999", status="flagged", processed=P2, codes=["rate_exceeded"], confidence=0.9),  # the retry
    row("B", 5, "410"),
    {
        **row("junk", 7, None, status="error", codes=["off_layout_key", "not_an_image"], confidence=None),
        "image_uri": JUNK_URI,
        "meter_id": None,
        "captured_at": None,
    },
]


def readings():
    return sink.rows_to_table(ROWS)


C1 = datetime(2026, 3, 9, 10, 0, tzinfo=timezone.utc)  # first review import
C2 = datetime(2026, 3, 10, 10, 0, tzinfo=timezone.utc)  # second review import


def correction(meter, day, text, when, by="ana", etag="e1", source=CSV):
    return Correction(
        image_uri=uri(meter, day),
        content_sha256=content(meter, day, etag=etag),
        meter_id=meter,
        captured_at=at(day),
        corrected_text=text,
        corrected_reading=Decimal(text),
        corrected_by=by,
        corrected_at=when,
        source=source,
    )


CORRECTION_ROWS = [
    correction("A", 5, "17", C1),  # the flagged 18 was 17: accepted, it leaves the queue and feeds 03-05's usage
    correction("B", 2, "505", C1),  # of the old content (the misread 900): the new content's 510 stands
    correction("B", 4, "405", C1, by="bo", source=LABEL_STUDIO),  # of the retry's content; superseded by ...
    correction("B", 4, "406", C2),  # ... the next import's 406
]


def corrections():
    return corrections_to_table(CORRECTION_ROWS)
