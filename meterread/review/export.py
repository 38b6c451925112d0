"""Review queue rows -> Label Studio tasks and a plain CSV. Pure.

A task's `data.image` is the photo's URI as the output has it (`s3://…` is resolved by a Label Studio project with
that bucket as cloud storage); `data.image_uri` carries it unchanged for the way back. The model's reading is a
prediction prefilling the `reading` text area of `LABEL_CONFIG`, its confidence the prediction's score.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import pyarrow as pa

READING_FIELD = "reading"  # the TextArea name in LABEL_CONFIG: the import reads the reviewer's value from it
IMAGE_FIELD = "image"
CSV_COLUMNS = (
    "image_uri", "meter_id", "captured_at", "status", "reason_codes",
    "model_reading", "confidence", "corrected_reading", "reviewer",
)  # fmt: skip
LABEL_CONFIG = f"""<View>
  <Header value="$summary" size="5"/>
  <Image name="{IMAGE_FIELD}" value="$image" zoom="true"/>
  <TextArea name="{READING_FIELD}" toName="{IMAGE_FIELD}" maxSubmissions="1" editable="true" required="true"
            placeholder="the reading on the register, e.g. 01234.5"/>
</View>
"""


def text(value) -> str:
    """A cell: `""` for null, ISO 8601 for times, decimals without trailing zeros, `;`-joined lists, else `str`."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return ";".join(value)
    return str(value)


def prediction(row: Mapping) -> dict:
    """The model's reading as a Label Studio prediction filling the `reading` text area."""
    result = {
        "from_name": READING_FIELD,
        "to_name": IMAGE_FIELD,
        "type": "textarea",
        "value": {"text": [row["reading_text"]]},
    }
    score = {} if row["confidence"] is None else {"score": row["confidence"]}
    return {"model_version": "meterread", **score, "result": [result]}


def summary(row: Mapping) -> str:
    """One line for the reviewer: meter, time, status and codes, the model's reading and the meter's neighbours."""
    codes = f" ({text(row['reason_codes'])})" if row["reason_codes"] else ""
    said = f"the model read {row['reading_text']!r}" if row["reading_text"] else "no reading from the model"
    around = f"accepted before {text(row['previous_reading']) or '-'}, after {text(row['next_reading']) or '-'}"
    return f"{row['meter_id'] or '?'} at {text(row['captured_at']) or '?'}: {row['status']}{codes}; {said}; {around}"


def label_studio_task(row: Mapping) -> dict:
    """One queue row -> one task: the photo, what to show beside it and, when the model read text, its prediction."""
    data = {
        "summary": summary(row),
        IMAGE_FIELD: row["image_uri"],
        "image_uri": row["image_uri"],
        "meter_id": text(row["meter_id"]),
        "captured_at": text(row["captured_at"]),
        "status": row["status"],
        "reason_codes": text(row["reason_codes"]),
        "model_reading": text(row["reading_text"]),
        "previous_reading": text(row["previous_reading"]),
        "next_reading": text(row["next_reading"]),
    }
    return {"data": data, "predictions": [prediction(row)] if row["reading_text"] else []}


def label_studio_tasks(queue: pa.Table) -> list[dict]:
    """`review_queue` rows -> Label Studio tasks (JSON import format), in the queue's order."""
    return [label_studio_task(row) for row in queue.to_pylist()]


def csv_row(row: Mapping) -> dict[str, str]:
    """One queue row -> one CSV row with empty `corrected_reading` and `reviewer` for the reviewer to fill."""
    cells = {name: text(row.get(name)) for name in CSV_COLUMNS}
    cells.update(model_reading=text(row["reading_text"]), corrected_reading="", reviewer="")
    return cells


def review_csv(queue: pa.Table) -> str:
    """`review_queue` rows -> CSV text with CSV_COLUMNS, in the queue's order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_row(row) for row in queue.to_pylist())
    return buffer.getvalue()
