"""The real-pixel samples `make demo` reads: small, licensed, labelled, only of meter models held out of training."""

import json

from meterread.data.crops import HELDOUT_MODELS
from meterread.demo import REAL_SAMPLES, labels_in
from meterread.training.dataset import load_split


def test_real_samples_are_small_licensed_and_held_out():
    files = [p for p in REAL_SAMPLES.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 2 * 1024 * 1024
    assert (REAL_SAMPLES / "NOTICE").is_file() and "Apache" in (REAL_SAMPLES / "LICENSE").read_text()
    strips = load_split(str(REAL_SAMPLES / "strips"), "heldout")
    photos = labels_in(REAL_SAMPLES / "photos" / "annotations.jsonl")
    assert len(strips.samples) == 36 and strips.problems == () and len(photos) == 24
    assert all((REAL_SAMPLES / "photos" / key).is_file() for key in photos)
    records = [json.loads(line) for line in (REAL_SAMPLES / "photos" / "annotations.jsonl").read_text().splitlines()]
    assert {r["meter_model"] for r in records} <= set(HELDOUT_MODELS)
    assert {s.meter_model for s in strips.samples} <= set(HELDOUT_MODELS)
