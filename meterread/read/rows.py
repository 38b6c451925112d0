"""Rows of the output: one per photo, from the fetched photo and the model's prediction (parse + validate). Pure:
rows are dicts until the sink types them (`sink.ReadingRow`)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone

from meterread.config import ReadConfig
from meterread.models.base import Prediction, Reader
from meterread.models.decoding import confidence_from_logprobs
from meterread.parse import ParsedReading, parse_reading
from meterread.preprocess import PREPROCESS_VERSION
from meterread.read import sink
from meterread.read.fetching import Fetched
from meterread.read.history import (
    MeterHistory,
)
from meterread.read.planning import Photo
from meterread.read.reasons import reason_codes
from meterread.read.validate import ACCEPTED, FLAGGED, MeterProfile, PriorReading, Rules, validate_reading


def base_row(fetched: Fetched, run_id: str, reader: Reader, prompt: str, processed_at: datetime) -> dict:
    photo = fetched.photo
    captured = photo.captured_at or processed_at
    image = fetched.image
    return {
        "run_id": run_id,
        "image_uri": photo.uri,
        "image_etag": photo.etag,
        "image_bytes": photo.size,
        "content_sha256": fetched.content_sha256,
        "meter_id": photo.meter_id,
        "captured_at": photo.captured_at,
        "captured_at_source": photo.captured_at_source,
        "capture_date": captured.astimezone(timezone.utc).date(),
        "model_id": reader.model_id,
        "adapter_id": reader.adapter_id,
        "model_fingerprint": reader.fingerprint,
        "prompt": prompt,
        "preprocess_version": PREPROCESS_VERSION,
        "width": image.width if image else None,
        "height": image.height if image else None,
        "blur": image.blur if image else None,
        "brightness": image.brightness if image else None,
        "processed_at": processed_at,
        "reasons": [],
        "reason_codes": list(fetched.codes),
    }


def judge(
    row: dict,
    prediction: Prediction,
    photo: Photo,
    history: MeterHistory,
    profile: MeterProfile | None,
    rules: Rules,
) -> tuple[dict, PriorReading | None]:
    """Parse + validate one prediction into the row's reading, confidence, status and reasons (`profile`: the
    meter's row of the meters table, if any). Also returns the meter's earlier accepted reading that this accepted
    one shows to be a misread (then dropped from `history`).

    A value the output's `reading` column cannot hold exactly is unparsable, never rounded or left to fail the
    write."""
    parsed = parse_reading(prediction.text)
    unfit = sink.reading_problem(parsed.value)
    parsed = ParsedReading(None, error=unfit) if unfit else parsed
    confidence = confidence_from_logprobs(list(prediction.token_logprobs))
    history.supersede(photo.uri)  # a new version of this photo: its own earlier reading is no reference
    previous, earlier = history.recent(photo.meter_id, photo.captured_at)
    following = history.following(photo.meter_id, photo.captured_at)  # known when this photo arrives late
    verdict = validate_reading(
        parsed,
        confidence,
        photo.captured_at,
        previous,
        profile,
        rules,
        earlier,
        processed_at=row["processed_at"],
        following=following,
    )
    reasons = list(verdict.reasons) + ([photo.key_problem] if photo.key_problem else [])
    status = verdict.status if not (photo.key_problem and verdict.status == ACCEPTED) else FLAGGED
    contradicted = verdict.contradicts if status == ACCEPTED else None
    if status == ACCEPTED and photo.meter_id and photo.captured_at:
        history.add(photo.meter_id, photo.captured_at, parsed.value, photo.uri)
        if contradicted is not None:
            history.discard(photo.meter_id, contradicted)
    return {
        **row,
        "reading_text": prediction.text,
        "reading": parsed.value,
        "confidence": confidence,
        "status": status,
        "reasons": reasons,
        "meter_type": profile.meter_type if profile else None,
    }, contradicted


def meter_profile(profiles: dict[str, MeterProfile], photo: Photo) -> MeterProfile | None:
    """The photo's meter in the meters table; None when the table has no row for it or the key names no meter."""
    return profiles.get(photo.meter_id) if photo.meter_id else None


def flag_contradicted(rows: list[dict], accepted: dict, judged: dict, contradicted: PriorReading | None) -> None:
    """Flag the row of this shard that holds `contradicted` (an accepted jump the later reading `judged` shows to be
    a misread), if it is in `rows`; `accepted` maps (meter_id, captured_at) of accepted rows to their index."""
    index = accepted.pop((judged["meter_id"], contradicted.captured_at), None) if contradicted else None
    if index is None:
        return
    jump = rows[index]
    note = f"jump to {jump['reading']} contradicted by the next reading {judged['reading']}: a misread?"
    rows[index] = {**jump, "status": FLAGGED, "reasons": [*jump["reasons"], note]}


METER_TYPE_PROMPT = "what type of meter is this"


def image_extras(config: ReadConfig, reader: Reader, ready: list[Fetched]) -> list[dict]:
    """Optional second looks at each image: meter type among `config.meter_types` (likelihood ranking) and
    Florence-2 task outputs (`config.tasks`, e.g. where the display is). One dict per image, possibly empty."""
    images = [item.image.image for item in ready]
    described: list[dict] = [{} for _ in ready]
    if config.meter_types:
        for found, (label, probability) in zip(
            described, reader.classify(images, METER_TYPE_PROMPT, config.meter_types)
        ):
            found.update(meter_type=label, meter_type_confidence=probability)
    if config.tasks:
        sizes = [(item.image.width, item.image.height) for item in ready]
        outputs: list[dict] = [{} for _ in ready]
        for task in config.tasks:
            for output, result in zip(outputs, reader.run_task(images, task, sizes)):
                output[task] = result
        for found, output in zip(described, outputs):
            found["task_outputs"] = json.dumps(output, default=float)
    return described


def with_extras(row: dict, described: dict) -> dict:
    """Merge image descriptions into a row; a meter type from the meters table wins over the model's guess."""
    if row.get("meter_type"):
        described = {k: v for k, v in described.items() if k not in ("meter_type", "meter_type_confidence")}
    return {**row, **described}


def with_reason_codes(row: dict) -> dict:
    """The row with `reason_codes` for every reason (`meterread.read.reasons`), beside codes set where it failed."""
    return {**row, "reason_codes": reason_codes(row["reasons"], row.get("reason_codes") or ())}


def status_counts(rows: Sequence[dict]) -> dict[str, int]:
    counts = Counter(row["status"] for row in rows)
    return {status: counts.get(status, 0) for status in ("accepted", "flagged", "error")}
