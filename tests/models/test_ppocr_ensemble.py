"""ppocr ensembles: the reading several CTC readers agree on (`decoding.ctc_ensemble_path`), and an ensemble
directory read through the registry like any checkpoint (`meterread.models.ppocr_ensemble`)."""

import json

import numpy as np
import pytest

from meterread.config import ModelSpec
from meterread.models.base import ModelLoadError, with_pattern
from meterread.models.decoding import (
    ctc_best_path,
    ctc_ensemble_path,
    ctc_log_likelihood,
    ctc_text,
    with_reading_likelihood,
)
from meterread.models.ppocr import build_tiny, reading_decoder
from meterread.models.ppocr_ensemble import PPOCREnsembleReader, fit_square
from meterread.models.ppocr_network import DIGITS
from meterread.models.registry import load_reader
from meterread.training.ensemble import build_ensemble
from meterread.training.restrip import restrip_checkpoint


def columns(*rows: dict[int, float], classes: int = 12) -> np.ndarray:
    """Log-probabilities, one column per `rows` entry: the given class probabilities, the rest shared evenly."""
    out = []
    for row in rows:
        rest = (1 - sum(row.values())) / (classes - len(row))
        probabilities = np.full(classes, rest)
        for k, p in row.items():
            probabilities[k] = p
        out.append(np.log(probabilities))
    return np.array(out)


BLANK = {0: 0.9}


def test_the_reading_every_member_finds_likelier_wins_over_the_first_members_own():
    one, seven = DIGITS.index("1") + 1, DIGITS.index("7") + 1
    unsure = columns(BLANK, {one: 0.5, seven: 0.45}, BLANK)  # reads "1", barely
    sure = columns(BLANK, BLANK, {seven: 0.9}, BLANK)  # reads "7", more columns than the first
    ids, parts = ctc_ensemble_path([unsure, sure], ctc_best_path)
    assert ctc_text(ids, DIGITS) == "7"
    mean = (ctc_log_likelihood(unsure, [seven]) + ctc_log_likelihood(sure, [seven])) / 2
    assert np.isclose(sum(parts), mean)  # the confidence is the members' geometric mean probability
    assert ctc_text(ctc_ensemble_path([unsure], ctc_best_path)[0], DIGITS) == "1"


def test_one_member_reads_as_it_would_alone_and_agreeing_members_keep_its_split():
    log_probs = columns(BLANK, {2: 0.8}, {2: 0.7}, BLANK, {11: 0.6}, {4: 0.9})
    alone = with_reading_likelihood(log_probs, ctc_best_path(log_probs))
    for members in ([log_probs], [log_probs, log_probs.copy()]):
        ids, parts = ctc_ensemble_path(members, ctc_best_path)
        assert ids == alone[0] and np.allclose(parts, alone[1])


def test_ties_go_to_the_earlier_member_and_no_members_is_refused():
    first, second = DIGITS.index("3") + 1, DIGITS.index("8") + 1
    a = columns(BLANK, {first: 0.6, second: 0.3}, BLANK)
    b = columns(BLANK, {second: 0.6, first: 0.3}, BLANK)
    assert ctc_text(ctc_ensemble_path([a, b], ctc_best_path)[0], DIGITS) == "3"
    assert ctc_text(ctc_ensemble_path([b, a], ctc_best_path)[0], DIGITS) == "8"
    with pytest.raises(ValueError, match="at least one member"):
        ctc_ensemble_path([], ctc_best_path)


def test_a_square_is_fitted_to_a_members_side_and_left_alone_at_its_own():
    image = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    assert fit_square(image, 128) is image
    assert fit_square(image, 64).shape == (64, 64, 3)


@pytest.fixture(scope="module")
def two_squares(tmp_path_factory):
    """An ensemble of two tiny recognisers of different weights, squares (64 and 96 px) and strips (so CTC column
    counts), and its members."""
    root = tmp_path_factory.mktemp("ensemble")
    small = build_tiny(root / "small", seed=1)
    large = restrip_checkpoint(build_tiny(root / "seed-2", seed=2), root / "large", 256, 64, image_size=96)
    return build_ensemble(root / "both", [small, large]), small, large


def test_an_ensemble_directory_loads_as_a_ppocr_reader_that_reads_at_its_largest_square(two_squares):
    ensemble, small, large = two_squares
    spec = ModelSpec(base=str(ensemble), device="cpu")
    assert spec.family == "ppocr"  # from ensemble.json: no --family needed
    reader = load_reader(spec)
    assert isinstance(reader, PPOCREnsembleReader) and len(reader.members) == 2
    assert reader.image_size == 96 and reader.layout.rows == 2 and reader.min_confidence is None
    images = [np.full((96, 96, 3), value, dtype=np.uint8) for value in (0, 90, 255)]
    predictions = reader.read(images, [reader.default_prompt] * 3)
    members = [
        member.log_probs([fit_square(image, member.image_size) for image in images]) for member in reader.members
    ]
    assert members[0].shape[1] != members[1].shape[1]  # the members read different numbers of columns
    for i, prediction in enumerate(predictions):
        ids, parts = ctc_ensemble_path([m[i] for m in members], reading_decoder(reader.spec, DIGITS))
        assert prediction.text == ctc_text(ids, DIGITS)
        assert np.isclose(sum(prediction.token_logprobs), sum(parts))
    assert reader.read([], []) == []
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        reader.read(images[:2], ["x"])
    with pytest.raises(ValueError, match="cannot rank meter types"):
        reader.classify(images, "x", ["gas", "water"])


def test_an_ensemble_reads_within_a_pattern_and_has_its_own_fingerprint(two_squares):
    ensemble, small, _ = two_squares
    reader = load_reader(ModelSpec(base=str(ensemble), device="cpu"))
    images = [np.full((96, 96, 3), value, dtype=np.uint8) for value in (30, 200)]
    for prediction in with_pattern(reader, "4.1").read(images, ["x", "x"]):
        assert len(prediction.text) == 6 and prediction.text[4] == "."
    member = load_reader(ModelSpec(base=str(small), device="cpu"))
    assert reader.fingerprint != member.fingerprint


def test_a_members_new_weights_change_the_ensembles_fingerprint(tmp_path):
    ensemble = build_ensemble(tmp_path / "e", [build_tiny(tmp_path / "a", seed=1), build_tiny(tmp_path / "b", seed=2)])
    before = load_reader(ModelSpec(base=str(ensemble), device="cpu")).fingerprint
    weights = ensemble / "member-1" / "model.safetensors"
    weights.write_bytes((tmp_path / "a" / "model.safetensors").read_bytes())
    assert load_reader(ModelSpec(base=str(ensemble), device="cpu")).fingerprint != before


def test_an_ensemble_that_cannot_read_as_one_is_refused_at_load(tmp_path):
    ensemble = build_ensemble(tmp_path / "e", [build_tiny(tmp_path / "a", seed=1), build_tiny(tmp_path / "b", seed=2)])
    with pytest.raises(ModelLoadError, match="adapters go on its members"):
        load_reader(ModelSpec(base=str(ensemble), adapter=str(tmp_path / "a"), device="cpu"))
    settings = ensemble / "member-1" / "meterread.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "display_rows": 1}))
    with pytest.raises(ModelLoadError, match="prepare photos differently"):
        load_reader(ModelSpec(base=str(ensemble), device="cpu"))
    (ensemble / "member-0" / "meterread.json").write_text(settings.read_text())
    with pytest.raises(ModelLoadError, match="is not the ensemble's"):  # members agree, the ensemble's file not
        load_reader(ModelSpec(base=str(ensemble), device="cpu"))
    (ensemble / "ensemble.json").write_text(json.dumps({"model_type": "ppocr", "members": ["member-0", "gone"]}))
    with pytest.raises(ModelLoadError, match="not all directories"):
        load_reader(ModelSpec(base=str(ensemble), device="cpu"))
    for members in (["member-0", "../a"], ["member-0", ""], []):
        (ensemble / "ensemble.json").write_text(json.dumps({"model_type": "ppocr", "members": members}))
        with pytest.raises(ModelLoadError, match="must be folder names inside"):
            load_reader(ModelSpec(base=str(ensemble), device="cpu"))


def test_a_member_that_links_out_of_the_ensemble_or_back_to_it_is_refused(tmp_path):
    ensemble = build_ensemble(tmp_path / "e", [build_tiny(tmp_path / "a", seed=1), build_tiny(tmp_path / "b", seed=2)])
    (ensemble / "back").symlink_to(ensemble)
    (ensemble / "out").symlink_to(tmp_path / "a")
    for link in ("back", "out"):
        (ensemble / "ensemble.json").write_text(json.dumps({"model_type": "ppocr", "members": ["member-0", link]}))
        with pytest.raises(ModelLoadError, match="a link out or back"):
            load_reader(ModelSpec(base=str(ensemble), device="cpu"))


def test_a_member_too_short_for_the_pattern_cannot_outvote_one_that_fits():
    """Member 0 has one column: its decoding falls back to "1", and "12" is beyond it (-inf). Without `fits` its
    unfitting "1" wins; with it, the fitting "12" does, at confidence 0 (flagged: one member cannot spell it)."""
    one, two = DIGITS.index("1") + 1, DIGITS.index("2") + 1
    short = columns({one: 0.9})
    long = columns(BLANK, {one: 0.9}, BLANK, {two: 0.9}, BLANK)
    members = [short, long]
    assert ctc_text(ctc_ensemble_path(members, ctc_best_path)[0], DIGITS) == "1"
    ids, parts = ctc_ensemble_path(members, ctc_best_path, fits=lambda ids: len(ids) == 2)
    assert ctc_text(ids, DIGITS) == "12" and parts[0] == -np.inf and not np.isnan(parts).any()
