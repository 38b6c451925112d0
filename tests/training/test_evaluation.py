"""Preparing a split for reading: every image through the model's layout, displays already cut out read whole."""

import json

import numpy as np
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
    the register's, never the pixels' guess, so no reading is wrong on its point alone (free reading: some are)."""
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
    assert known["known_register"] and not free["known_register"] and known["count"] == free["count"] == 36
    assert known["exact_match"] == known["digits_exact_match"] >= free["exact_match"]
    assert known["character_error_rate"] <= free["character_error_rate"]
