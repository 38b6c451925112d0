"""The ppocr family: PP-OCRv4's recogniser imported into the native network (checked against onnxruntime), CTC
decoding, the strip processor, and reading and training through the registry like every family."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from meterread.config import ModelSpec, TrainConfig
from meterread.data.synth import write_dataset
from meterread.models.base import ModelLoadError
from meterread.models.decoding import (
    ctc_best_path,
    ctc_constrained_path,
    ctc_log_likelihood,
    with_reading_likelihood,
)
from meterread.models.patterns import ReadingPattern
from meterread.models.ppocr import StripProcessor, encode_labels, unfold_square
from meterread.models.ppocr_import import (
    check_import,
    graph_weights,
    head_rows,
    import_ppocr,
    import_weights,
    published_onnx,
)
from meterread.models.ppocr_network import DIGITS, PPOCRForCTC
from meterread.models.registry import load_reader
from meterread.preprocess import equalize_lightness, fold_into_square
from meterread.training.evaluation import evaluate_split
from meterread.training.train import inference_spec, train


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> str:
    return str(import_ppocr(tmp_path_factory.mktemp("ppocr-published")))


def columns(*classes: int, classes_count: int = 12, p: float = 0.9) -> np.ndarray:
    """Log-probabilities whose best class in column t is `classes[t]` with probability `p`."""
    rest = (1 - p) / (classes_count - 1)
    probabilities = np.full((len(classes), classes_count), rest)
    probabilities[np.arange(len(classes)), classes] = p
    return np.log(probabilities)


def test_best_path_collapses_repeats_drops_blanks_and_splits_the_path_probability():
    log_probs = columns(0, 2, 2, 0, 2, 11, 0, 4)  # blank 1 1 blank 1 . blank 3
    ids, parts = ctc_best_path(log_probs)
    assert "".join(DIGITS[i - 1] for i in ids) == "11.3"
    assert len(parts) == 4 and np.isclose(sum(parts), np.log(0.9) * 8)
    assert np.isclose(parts[0], np.log(0.9) * 4)  # the leading blank, "1 1" and the blank after them
    empty_ids, empty_parts = ctc_best_path(columns(0, 0, 0))
    assert empty_ids == [] and np.isclose(empty_parts[0], np.log(0.9) * 3)


def test_constrained_path_keeps_to_the_pattern_and_agrees_with_the_best_path_when_it_fits():
    log_probs = columns(0, 2, 0, 3, 11, 4, 0, 5)  # "12.34"
    free = ctc_best_path(log_probs)
    assert ctc_constrained_path(log_probs, DIGITS, ReadingPattern()) == (free[0], pytest.approx(free[1]))
    ids, parts = ctc_constrained_path(log_probs, DIGITS, ReadingPattern.parse("4"))  # no separator allowed
    assert "".join(DIGITS[i - 1] for i in ids) == "1234" and sum(parts) < sum(free[1])
    ids, _ = ctc_constrained_path(columns(2, 0, 2, 0), DIGITS, ReadingPattern.parse("3"))
    assert len(ids) == 3  # a third digit is found where the best path read two
    assert ctc_constrained_path(log_probs, DIGITS, ReadingPattern.parse("2.2")) == free  # it fits: no search
    too_few = columns(2, 0, 3)  # three columns cannot hold five digits: the plain best path
    assert ctc_constrained_path(too_few, DIGITS, ReadingPattern.parse("5")) == ctc_best_path(too_few)


@pytest.mark.parametrize("ids", [[2, 3, 3, 11, 5], [], [7], [4, 4, 4]], ids=["12.24", "empty", "one", "repeats"])
def test_reading_likelihood_sums_every_alignment_as_torch_ctc_does(ids):
    log_probs = torch.randn(14, 12, generator=torch.Generator().manual_seed(len(ids))).log_softmax(-1)
    targets = torch.tensor([ids], dtype=torch.long).reshape(1, len(ids))
    expected = -torch.nn.functional.ctc_loss(
        log_probs[:, None], targets, torch.tensor([14]), torch.tensor([len(ids)]), reduction="sum"
    )
    assert ctc_log_likelihood(log_probs.numpy().astype(np.float64), ids) == pytest.approx(float(expected), abs=1e-4)


def test_confidence_is_the_readings_probability_over_all_its_alignments():
    # "1" spread over two columns with a blank beside it: three alignments of the same reading share the mass
    log_probs = np.log(np.array([[0.5, 0.5] + [0.0] * 10, [0.5, 0.5] + [0.0] * 10]) + 1e-12)
    ids, parts = with_reading_likelihood(log_probs, ([1], [float(np.log(0.25))]))  # one alignment: 0.25
    assert np.exp(sum(parts)) == pytest.approx(0.75, abs=1e-6)  # "1 1", "1 -", "- 1": 0.75 in all
    split = with_reading_likelihood(columns(0, 2, 0, 3), ctc_best_path(columns(0, 2, 0, 3)))[1]
    path = ctc_best_path(columns(0, 2, 0, 3))[1]
    assert np.allclose(np.array(split) / sum(split), np.array(path) / sum(path))  # the path's proportions kept
    assert sum(split) >= sum(path)


def test_unfold_is_the_inverse_of_fold_and_the_processor_makes_bgr_strips_of_its_height():
    strip = np.random.default_rng(0).integers(0, 255, (32, 128, 3), dtype=np.uint8)
    square = fold_into_square(strip, 64, rows=2)
    assert square.shape == (64, 64, 3) and np.array_equal(unfold_square(square, 2), strip)
    with pytest.raises(ValueError, match="not divisible"):
        unfold_square(np.zeros((63, 63, 3), np.uint8), 2)
    red = np.zeros((96, 96, 3), np.uint8)
    red[..., 0] = 255
    pixels = StripProcessor()([red, red], rows=2)
    assert pixels.shape == (2, 3, 48, 192) and StripProcessor(width=320)([red], rows=2).shape == (1, 3, 48, 320)
    assert StripProcessor(width=424, height=64)([red], rows=2).shape == (1, 3, 64, 424)
    assert torch.all(pixels[:, 2] == 1) and torch.all(pixels[:, :2] == -1)  # red is the last channel in BGR


def test_labels_are_one_based_padded_and_refuse_characters_outside_the_vocabulary():
    labels = encode_labels(["10.5", "7"], DIGITS)
    assert labels.tolist() == [[2, 1, 11, 6], [8, -100, -100, -100]]
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        encode_labels(["12-3"], DIGITS)


def test_head_rows_put_blank_first_then_each_character_one_past_its_dictionary_index():
    assert head_rows(list("ab0123456789.c")) == [0, *range(3, 14)]
    with pytest.raises(ValueError, match="lacks"):
        head_rows(list("abc"))


def test_the_import_matches_onnxruntime_and_refuses_a_network_it_does_not_fit(published, tiny_ppocr):
    reader = load_reader(ModelSpec(family="ppocr", base=published, device="cpu"))
    weights, characters = graph_weights(published_onnx())
    assert check_import(reader.model, published_onnx(), head_rows(characters)) < 1e-4
    assert json.loads((Path(published) / "meterread.json").read_text()) == {
        "crop_display": False,
        "display_rows": 2,
    }
    assert reader.layout.rows == 2 and reader.image_size == 96
    tiny = PPOCRForCTC.from_pretrained(tiny_ppocr)
    with pytest.raises(ValueError, match="the ONNX graph has 234 weights"):
        import_weights(tiny, weights, head_rows(characters))
    with pytest.raises(ValueError, match="even"):
        import_ppocr("unused", image_size=95)
    with pytest.raises(ValueError, match="multiple of 8"):
        import_ppocr("unused", strip_width=300)
    with pytest.raises(ValueError, match="strip_height 40 must be a multiple of 16"):
        import_ppocr("unused", strip_height=40)


@pytest.mark.parametrize("strip_height", [48, 64])
def test_the_published_recogniser_reads_printed_digits_through_the_reader(published, tmp_path, strip_height):
    """The whole path (fold, unfold, BGR, scaling, CTC) on the published weights: clean printed digits, at the
    published height and imported to read taller strips (the weights do not depend on the height)."""
    base = published if strip_height == 48 else str(import_ppocr(tmp_path / "tall", strip_height=strip_height))
    reader = load_reader(ModelSpec(family="ppocr", base=base, device="cpu"))
    assert reader.model.config.strip_height == reader.processor.height == strip_height
    images = []
    for text in ("31415", "27182", "90210"):
        strip = np.full((60, 240, 3), 255, np.uint8)
        cv2.putText(strip, text, (12, 46), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 3, cv2.LINE_AA)
        images.append(fold_into_square(strip, reader.image_size, rows=2))
    predictions = reader.read(images, [""] * 3)
    assert [p.text for p in predictions] == ["31415", "27182", "90210"]
    assert all(np.exp(sum(p.token_logprobs)) > 0.5 for p in predictions)


def test_a_ppocr_checkpoint_refuses_another_family_and_cannot_rank_meter_types(tiny_ppocr):
    with pytest.raises(ModelLoadError, match="use --family ppocr"):
        load_reader(ModelSpec(family="paligemma", base=tiny_ppocr, device="cpu"))
    reader = load_reader(ModelSpec(family="ppocr", base=tiny_ppocr, device="cpu"))
    with pytest.raises(ValueError, match="cannot rank meter types"):
        reader.classify([np.zeros((64, 64, 3), np.uint8)], "type", ["gas", "water"])


@pytest.fixture(scope="module")
def strips_like_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ppocr-dataset")
    write_dataset(root, {"train": 16, "valid": 8, "test": 8}, seed=7, size=(320, 240))
    return str(root)


def ppocr_recipe(tmp_path, dataset, **overrides):
    values = {
        "family": "ppocr",
        "init_tiny": {"image_size": 64},
        "dataset": dataset,
        "output": str(tmp_path / "run"),
        "strategy": "full",
        "lr": 1e-3,
        "batch_size": 8,
        "epochs": 1,
        "eval_batch_size": 8,
        "crop_display": True,
        "display_rows": 2,
        "seed": 3,
        **overrides,
    }
    return TrainConfig.from_mapping(values).validate()


@pytest.mark.parametrize("strategy", ["full", "lora", "freeze-vision"])
def test_meterread_train_trains_saves_and_evaluates_a_ppocr_model(tmp_path, strips_like_dataset, strategy):
    config = ppocr_recipe(tmp_path, strips_like_dataset, strategy=strategy)
    result = train(config, progress=False, log=lambda *_: None)
    best = tmp_path / "run" / "best"
    weights = "adapter_model.safetensors" if strategy == "lora" else "model.safetensors"
    assert result["steps"] == 2 and (best / weights).is_file()
    layout = {"crop_display": True, "display_rows": 2, "local_contrast": False}
    assert json.loads((best / "meterread.json").read_text()) == layout
    scores = evaluate_split(inference_spec(config, best, result["base"]), strips_like_dataset, "test", progress=False)
    assert scores["count"] == 8 and scores["parse_rate"] == 1.0  # constrained CTC paths always parse
    trained = load_reader(inference_spec(config, best, result["base"]))
    start = load_reader(ModelSpec(family="ppocr", base=result["base"], device="cpu"))
    changed = [
        name
        for name, value in trained.model.state_dict().items()
        if not torch.equal(value, start.model.state_dict()[name])
    ]
    assert changed
    if strategy == "freeze-vision":  # the backbone's weights stay (its norm statistics still move in training)
        assert not [n for n in changed if n.startswith("backbone.") and "running_" not in n and "num_batches" not in n]
        assert any(n.startswith("neck.") for n in changed)


def test_training_reads_inputs_with_the_recipe_layout_not_the_base_checkpoints(tmp_path, strips_like_dataset):
    """The tiny base was saved reading two rows; a one-row recipe must train (and save) one row."""
    from meterread.training.train import start_run

    run = start_run(ppocr_recipe(tmp_path, strips_like_dataset, display_rows=1), progress=False, log=lambda *_: None)
    assert run.reader.layout.rows == 1
    square = run.train_images[0]
    expected = StripProcessor()([square], rows=1)
    assert torch.equal(run.reader.training_batch([square], [""], ["1"])["pixel_values"], expected)


def test_a_local_contrast_recipe_trains_on_equalised_inputs_and_its_model_reads_them(tmp_path, strips_like_dataset):
    """`local_contrast: true`: the training images are the plain ones equalised, the saved `meterread.json` says
    so, and the loaded model (evaluation, reads) preprocesses the same way."""
    from meterread.training.train import start_run

    quiet = {"progress": False, "log": lambda *_: None}
    plain = start_run(ppocr_recipe(tmp_path / "plain", strips_like_dataset), **quiet)
    equalised = start_run(ppocr_recipe(tmp_path / "equalised", strips_like_dataset, local_contrast=True), **quiet)
    assert np.array_equal(equalised.train_images[0], equalize_lightness(plain.train_images[0], rows=2))
    assert not np.array_equal(equalised.train_images[0], plain.train_images[0])
    config = ppocr_recipe(tmp_path, strips_like_dataset, local_contrast=True)
    result = train(config, **quiet)
    best = tmp_path / "run" / "best"
    assert json.loads((best / "meterread.json").read_text())["local_contrast"] is True
    assert load_reader(inference_spec(config, best, result["base"])).layout.local_contrast


def test_a_vision_warm_start_is_refused_for_a_ppocr_model(tmp_path, strips_like_dataset):
    with pytest.raises(ValueError, match="the ppocr family has none"):
        train(ppocr_recipe(tmp_path, strips_like_dataset, warm_start_steps=5), progress=False, log=lambda *_: None)


def test_a_tiny_ppocr_model_memorises_a_few_strips(tiny_ppocr):
    """CTC training through the reader's own batches reaches the network: 4 printed readings learnt exactly."""
    reader = load_reader(ModelSpec(family="ppocr", base=tiny_ppocr, device="cpu"))
    texts = ["472", "80.5", "123", "963"]
    images = []
    for text in texts:
        strip = np.full((40, 160, 3), 255, np.uint8)
        cv2.putText(strip, text, (6, 32), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (0, 0, 0), 2, cv2.LINE_AA)
        images.append(fold_into_square(strip, reader.image_size, rows=2))
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(reader.model.parameters(), lr=3e-3)
    reader.model.train()
    for _ in range(200):
        loss = reader.model(**reader.training_batch(images, [""] * 4, texts)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    reader.model.eval()
    assert [p.text for p in reader.read(images, [""] * 4)] == texts


def test_on_cpu_the_backbone_reads_channels_last_strips_and_the_logits_do_not_change(tiny_ppocr):
    """The layout is a speed choice (`meterread bench --training`), not a numerical one: the processor's batches are
    channels-last already, a contiguous batch is made so, and the weights keep their layout."""
    model = PPOCRForCTC.from_pretrained(tiny_ppocr).eval()
    seen = []
    model.backbone.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0]))
    processor = StripProcessor(model.config.strip_width, model.config.strip_height)
    squares = [
        np.random.default_rng(i).integers(0, 256, (model.config.image_size,) * 2 + (3,), np.uint8) for i in (1, 2)
    ]
    from_processor = processor(squares, 2)
    strips = from_processor.contiguous()
    with torch.no_grad():
        model(from_processor)
        fast = model(strips).logits
        model.channels_last_on_cpu = False
        plain = model(strips).logits
    assert all(s.is_contiguous(memory_format=torch.channels_last) and not s.is_contiguous() for s in seen[:2])
    assert seen[2].is_contiguous()
    assert torch.allclose(fast, plain, atol=1e-5)
    assert all(p.is_contiguous() for p in model.parameters())  # so save_pretrained writes them as they were
