"""The bundled demo model really reads: fresh synthetic photos (a seed never used in training), mostly right."""

import json

import numpy as np

from meterread.config import DEMO_MODEL_DIR
from meterread.models.base import ModelSpec, load_reader
from meterread.parse import parse_reading
from meterread.preprocess import preprocess_photo
from meterread.synth import encode_jpeg, plan_samples, render_meter


def test_bundled_model_reads_fresh_synthetic_photos():
    reader = load_reader(ModelSpec(family="paligemma", base=str(DEMO_MODEL_DIR), device="cpu"))
    assert reader.layout.crop_display  # trained on rectified display crops; preprocessing follows meterread.json
    samples = plan_samples(16, seed=424242)
    images, labels = [], []
    for sample, sample_seed in samples:
        rng = np.random.default_rng(sample_seed)
        photo = render_meter(sample.label, rng, (1280, 720), sample.meter_type, sample.roll)
        images.append(preprocess_photo(encode_jpeg(photo, rng), reader.image_size, layout=reader.layout).image)
        labels.append(sample.label)
    predictions = reader.read(images, [reader.default_prompt] * len(images))
    correct = sum(parse_reading(p.text).value == parse_reading(label).value for p, label in zip(predictions, labels))
    # The bundled model reads all 16 (held-out exact match 97.3%, in provenance.json and the README; the stage-1
    # model read 10-12); a random-weight model reads none, so this guards against a broken, swapped or worse model.
    assert correct >= 14, [(p.text, label) for p, label in zip(predictions, labels)]


def test_bundled_model_carries_its_provenance():
    provenance = json.loads((DEMO_MODEL_DIR / "provenance.json").read_text())
    for key in ("recipe", "command", "seed", "training_data", "dataset_manifest", "heldout"):
        assert key in provenance, key
    assert provenance["heldout"]["count"] >= 1000 and provenance["heldout"]["exact_match"] >= 0.97
    assert [stage["recipe"] for stage in provenance["stages"]] == [
        "configs/demo-tiny-paligemma.yaml",
        "configs/demo-tiny-paligemma-stage2.yaml",
        "configs/demo-tiny-paligemma-stage3.yaml",
        "configs/demo-tiny-paligemma-stage4.yaml",
        "configs/demo-tiny-paligemma-stage5.yaml",
    ]
    assert (DEMO_MODEL_DIR / "train_config.json").is_file() and (DEMO_MODEL_DIR / "metrics.json").is_file()
