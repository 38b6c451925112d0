"""Preparing a split for reading: every image through the model's layout, displays already cut out read whole."""

import json

import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

from meterread.cli import app
from meterread.data.synth import encode_jpeg, render_meter
from meterread.demo import REAL_SAMPLES
from meterread.preprocess import InputLayout, preprocess_photo
from meterread.training.dataset import parse_annotations
from meterread.training.evaluation import prepare_images


def test_a_strip_marked_as_display_is_folded_whole_and_a_photo_is_cropped_first(tmp_path):
    rng = np.random.default_rng(3)
    photo = encode_jpeg(render_meter("04817.3", rng, (640, 480), "electricity-lcd"), rng)
    strip = (REAL_SAMPLES / "strips" / "heldout" / "lcd-lcd2-000000.jpg").read_bytes()  # real digit crops
    (tmp_path / "photo.jpg").write_bytes(photo)
    (tmp_path / "strip.jpg").write_bytes(strip)
    text = '{"image": "photo.jpg", "suffix": "1"}\n{"image": "strip.jpg", "suffix": "2", "display": true}\n'
    layout = InputLayout(crop_display=True, rows=2)

    images, kept, problems = prepare_images(parse_annotations(text, str(tmp_path), "test"), 128, layout, False)

    assert kept == [0, 1] and problems == []
    np.testing.assert_array_equal(images[0], preprocess_photo(photo, 128, layout=layout).image)
    whole = preprocess_photo(strip, 128, layout=InputLayout(crop_display=False, rows=2)).image
    np.testing.assert_array_equal(images[1], whole)
    # the display search finds a window inside the strip (cutting digits): reading it whole is a different input
    assert not np.array_equal(whole, preprocess_photo(strip, 128, layout=layout).image)


def test_known_register_reads_each_bundled_real_strip_within_its_labels_register(tmp_path):
    """`meterread eval --known-register` with the bundled model on the bundled real strips: the decimal point is
    the register's, never the pixels' guess, so no reading is wrong on its point alone (free reading: some are).
    predictions.parquet holds every strip with the verdict metrics.json counted."""
    runner = CliRunner()
    metrics = {}
    for mode, extra in (("free", []), ("known", ["--known-register"])):
        out = tmp_path / mode
        result = runner.invoke(
            app,
            ["eval", str(REAL_SAMPLES / "strips"), "--split", "heldout", "--device", "cpu", "--out", str(out), *extra],
        )
        assert result.exit_code == 0, result.output
        metrics[mode] = json.loads((out / "metrics.json").read_text())
    known, free = metrics["known"], metrics["free"]
    rows = pq.read_table(tmp_path / "free" / "predictions.parquet").to_pylist()  # one row per strip, same verdicts
    assert len(rows) == 36 and sum(row["exact"] for row in rows) / 36 == free["exact_match"]
    assert {row["meter_model"] for row in rows} == set(free["by_meter_model"])
    assert known["known_register"] and not free["known_register"] and known["count"] == free["count"] == 36
    assert known["exact_match"] == known["digits_exact_match"] >= free["exact_match"]
    assert known["character_error_rate"] <= free["character_error_rate"]


def test_eval_with_the_baseline_puts_its_reading_beside_ours_on_every_row(tmp_path):
    """`meterread eval --baseline ppocr`: PP-OCRv4 reads the same strips; metrics.json and predictions.parquet agree."""
    out = tmp_path / "eval"
    args = ["eval", str(REAL_SAMPLES / "strips"), "--split", "heldout", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--baseline", "ppocr"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    rows = pq.read_table(out / "predictions.parquet").to_pylist()
    assert len(rows) == metrics["baseline"]["count"] == 36
    assert sum(row["baseline_exact"] for row in rows) / 36 == metrics["baseline"]["exact_match"]
    assert sum(row["exact"] for row in rows) > sum(row["baseline_exact"] for row in rows)  # ours reads more of them
    assert all(row["label"] and row["image"].endswith(".jpg") for row in rows)
