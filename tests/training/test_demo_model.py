"""The bundled demo model really reads: fresh synthetic photos (a seed never used in training) and real digit crops
of meter models held out of its training, mostly right; its provenance says where every weight came from."""

import json
import shlex

import numpy as np
import pytest
from typer.testing import CliRunner

from meterread.cli import app
from meterread.config import DEMO_MODEL_DIR, DEMO_MODEL_FAMILY, ModelSpec
from meterread.data.crops import HELDOUT_MODELS
from meterread.data.synth import encode_jpeg, plan_samples, render_meter
from meterread.demo import REAL_SAMPLES
from meterread.models.registry import load_reader
from meterread.parse import parse_reading
from meterread.preprocess import preprocess_photo
from meterread.training.evaluation import evaluate_split


def test_bundled_model_reads_fresh_synthetic_photos():
    reader = load_reader(ModelSpec(base=str(DEMO_MODEL_DIR), device="cpu"))
    assert reader.spec.family == DEMO_MODEL_FAMILY
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
    # The bundled model reads all 16 (held-out exact match 99.83%, in provenance.json and the README; the stage-1
    # model read 10-12); a random-weight model reads none, so this guards against a broken, swapped or worse model.
    assert correct >= 14, [(p.text, label) for p, label in zip(predictions, labels)]


def test_bundled_model_reads_bundled_real_strips():
    """The 36 real-crop strips `make demo` reads: digits of the three meter models held out of its training."""
    spec = ModelSpec(base=str(DEMO_MODEL_DIR), device="cpu")
    metrics = evaluate_split(spec, str(REAL_SAMPLES / "strips"), "heldout", progress=False)
    assert metrics["count"] == 36 and set(metrics["by_meter_model"]) == set(HELDOUT_MODELS)
    # Measured here: 34 of 36 (76.3% of the 900-strip held-out set; the 48 px bundle before it 31, the stage 2+3
    # average 32); the PaliGemma it replaced read 0 of them. Two strips of slack for another CPU's rounding; a
    # broken, swapped or untrained model reads none, and one read at the wrong strip size fewer.
    assert round(metrics["exact_match"] * 36) >= 32, metrics["worst"]


def test_bundled_model_carries_its_provenance():
    provenance = json.loads((DEMO_MODEL_DIR / "provenance.json").read_text())
    for key in ("recipe", "command", "seed", "training_data", "dataset_manifest", "heldout"):
        assert key in provenance, key
    assert provenance["heldout"]["count"] >= 1000 and provenance["heldout"]["exact_match"] >= 0.98
    assert [stage["recipe"] for stage in provenance["stages"]] == [
        "configs/ppocr-real-strips.yaml",
        "configs/ppocr-photos.yaml",
        "configs/ppocr-augment.yaml",
        "configs/ppocr-recolour.yaml",
        "configs/ppocr-taller.yaml",
    ]
    assert provenance["stages"][0]["training_data"].startswith("meterread strips ")  # real-crop strips first
    assert "--recolour" in provenance["stages"][-2]["training_data"]  # stage 4: recoloured strips
    averaged = provenance["averaged"]  # the bundled weights: stage 5 and its base averaged, measured on validation
    assert averaged["command"].startswith("meterread average ") and len(averaged["ingredients"]) == 2
    earlier = provenance["earlier_averages"]  # the bases of stages 4 and 5: stages 2 and 3, then 2+3 and 4, averaged
    assert [record["command"].split()[:2] for record in earlier] == [["meterread", "average"]] * 2
    assert all(record["valid"]["count"] >= 900 for record in earlier)
    assert averaged["valid"]["exact_match"] >= earlier[-1]["valid"]["exact_match"]  # chosen on validation
    restripped = provenance["restripped"]  # stage 5's base: the stage-4 average read 64 px high
    assert restripped["command"].startswith("meterread restrip ") and restripped["strip_after"] == [64, 424]
    config = json.loads((DEMO_MODEL_DIR / "config.json").read_text())
    assert (config["strip_height"], config["strip_width"]) == (64, 424)  # the bundle reads the size it trained at
    assert sum(averaged["weights"]) == pytest.approx(1.0) and averaged["valid"]["count"] >= 900
    assert provenance["min_confidence"]["chosen_on"].startswith("the averaged checkpoint")  # its own validation
    assert json.loads((DEMO_MODEL_DIR / "metrics.json").read_text())["valid"] == averaged["valid"]
    pretrained = provenance["pretrained"]  # where the first stage's weights came from, and under which licence
    assert pretrained["command"].startswith("meterread import-ppocr ")
    assert "PP-OCRv4" in pretrained["source"] and "Apache-2.0" in pretrained["source"]
    notice = (DEMO_MODEL_DIR / "NOTICE").read_text()  # the published weights' attribution travels with the bundle
    assert pretrained["source"] in notice and "Apache License, Version 2.0" in notice
    assert (DEMO_MODEL_DIR / "train_config.json").is_file() and (DEMO_MODEL_DIR / "metrics.json").is_file()


def test_bundled_model_records_real_pixel_evaluations_beside_the_baseline():
    provenance = json.loads((DEMO_MODEL_DIR / "provenance.json").read_text())
    evaluations = provenance["evaluations"]
    real = (
        "real-strips-heldout-models",
        "real-strips-seen-models",
        "real-photos-heldout-models",
        "real-photos-seen-models",
    )
    assert set(evaluations) == {"synthetic", *real, *(f"{name}-known-register" for name in real)}
    for name, record in evaluations.items():
        assert record["count"] >= 300 and record["baseline"]["name"] == "ppocr", name
        assert record["baseline"]["count"] == record["count"], name  # the same photos
        assert record["exact_match"] > record["baseline"]["exact_match"], name  # ahead of the peer on every set
        assert record["known_register"] == name.endswith("-known-register"), name
    for name in real:  # within a known register the point is never wrong alone, and no set reads worse
        known, free = evaluations[f"{name}-known-register"], evaluations[name]
        assert known["count"] == free["count"] and known["data"] == free["data"], name
        assert known["exact_match"] == known["digits_exact_match"] >= free["exact_match"], name
    heldout_strips = evaluations["real-strips-heldout-models"]
    assert heldout_strips["count"] >= 500
    assert set(heldout_strips["by_meter_model"]) == set(HELDOUT_MODELS)  # only makes never seen in training
    settings = json.loads((DEMO_MODEL_DIR / "meterread.json").read_text())
    assert settings["min_confidence"] == provenance["min_confidence"]["value"] is not None
    assert "validation" in provenance["min_confidence"]["chosen_on"]  # chosen on validation, not on a held-out set


@pytest.mark.slow
def test_bundled_model_meets_the_bar_on_its_heldout_set(tmp_path):
    """Rerun the held-out command recorded in provenance.json and `meterread eval` on it (~2 min on 2 cores)."""
    heldout = json.loads((DEMO_MODEL_DIR / "provenance.json").read_text())["heldout"]
    command = shlex.split(heldout["data"])  # meterread synth data/heldout --n 0 --test 1200 --seed 909
    assert command[:2] == ["meterread", "synth"] and "--seed" in command
    runner = CliRunner()
    synth = runner.invoke(app, ["synth", str(tmp_path / "heldout"), *command[3:]])
    assert synth.exit_code == 0, synth.output
    evaluated = runner.invoke(
        app, ["eval", str(tmp_path / "heldout"), "--device", "cpu", "--out", str(tmp_path / "eval")]
    )
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["count"] == heldout["count"] >= 1000
    assert metrics["exact_match"] >= 0.98  # issue 5's bar
    # The recorded figure is this measurement (a few photos of slack for another CPU's floating-point rounding).
    assert abs(metrics["exact_match"] - heldout["exact_match"]) <= 3 / heldout["count"]
