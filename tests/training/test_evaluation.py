"""Preparing a split for reading: every image through the model's layout, displays already cut out read whole."""

import numpy as np

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
