"""The review queue as Label Studio tasks and as a CSV (pure), on the constructed series of tests/tables."""

import csv
import io

from meterread.review.export import CSV_COLUMNS, label_studio_tasks, review_csv
from meterread.tables import readings_current, review_queue
from tests.tables.series import JUNK_URI, readings, uri


def queue():
    return review_queue(readings_current(readings()))


def test_a_task_shows_the_photo_and_prefills_the_models_reading():
    tasks = label_studio_tasks(queue())
    assert [task["data"]["image_uri"] for task in tasks] == [uri("A", 5), uri("B", 4), JUNK_URI]
    assert tasks[0] == {
        "data": {
            "summary": (
                "A at 2026-03-05T20:00:00+00:00: flagged (low_confidence); the model read '18'; "
                "accepted before 3, after 15"
            ),
            "image": uri("A", 5),
            "image_uri": uri("A", 5),
            "meter_id": "A",
            "captured_at": "2026-03-05T20:00:00+00:00",
            "status": "flagged",
            "reason_codes": "low_confidence",
            "model_reading": "18",
            "previous_reading": "3",
            "next_reading": "15",
        },
        "predictions": [
            {
                "model_version": "meterread",
                "score": 0.3,
                "result": [{"from_name": "reading", "to_name": "image", "type": "textarea", "value": {"text": ["18"]}}],
            }
        ],
    }


def test_a_photo_without_a_reading_has_no_prediction():
    junk = label_studio_tasks(queue())[2]
    assert junk["predictions"] == []
    assert junk["data"]["reason_codes"] == "off_layout_key;not_an_image"
    assert junk["data"]["summary"].startswith("? at ?: error (off_layout_key;not_an_image); no reading from the model")


def test_the_csv_has_one_row_per_queued_photo_with_empty_cells_to_fill():
    rows = list(csv.DictReader(io.StringIO(review_csv(queue()))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[0] == {
        "image_uri": uri("A", 5),
        "meter_id": "A",
        "captured_at": "2026-03-05T20:00:00+00:00",
        "status": "flagged",
        "reason_codes": "low_confidence",
        "model_reading": "18",
        "confidence": "0.3",
        "corrected_reading": "",
        "reviewer": "",
    }
    assert [row["image_uri"] for row in rows] == [uri("A", 5), uri("B", 4), JUNK_URI]
    assert rows[2]["model_reading"] == rows[2]["confidence"] == rows[2]["meter_id"] == ""
