"""A small output to review: photos written to a bucket (local or s3://) and one run's rows over them."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone
from decimal import Decimal

from meterread.read import sink
from meterread.storage import resolve, write_bytes

PROCESSED = datetime(2026, 3, 7, 2, 0, tzinfo=timezone.utc)
# (meter, day, what the model read, status, reason codes, confidence)
PHOTOS = [
    ("A", 1, "100", "accepted", [], 0.99),
    ("A", 2, "180", "flagged", ["low_confidence"], 0.3),  # really 108
    ("A", 3, "115", "accepted", [], 0.98),
    ("B", 2, "9999", "flagged", ["rate_exceeded"], 0.9),  # really 0501
]


def photo_bytes(meter: str, day: int) -> bytes:
    return f"not really a JPEG: meter {meter}, day {day}".encode()


def write_output(photos: str, output: str) -> dict[tuple[str, int], str]:
    """Write PHOTOS under `photos` and their rows under `output`; returns each photo's URI by (meter, day)."""
    fs, root = resolve(photos)
    uris, rows = {}, []
    for meter, day, text, status, codes, confidence in PHOTOS:
        path = f"{root}/{meter}/202603{day:02d}T200000.jpg"
        data = photo_bytes(meter, day)
        write_bytes(fs, path, data)
        uris[meter, day] = fs.unstrip_protocol(path)
        rows.append(
            {
                "run_id": "r1",
                "image_uri": uris[meter, day],
                "image_etag": "e1",
                "content_sha256": hashlib.sha256(data).hexdigest(),
                "meter_id": meter,
                "meter_type": "water-mechanical",
                "captured_at": datetime(2026, 3, day, 20, tzinfo=timezone.utc),
                "capture_date": date(2026, 3, day),
                "reading_text": text,
                "reading": Decimal(text),
                "confidence": confidence,
                "status": status,
                "reasons": [f"text for {code}" for code in codes],
                "reason_codes": codes,
                "processed_at": PROCESSED,
            }
        )
    out_fs, out_root = resolve(output)
    sink.write_shard(out_fs, out_root, rows, "r1", "s1")
    return uris
