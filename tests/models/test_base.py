import numpy as np

from meterread.config import ModelSpec
from meterread.models.base import Prediction, read_by_pattern, read_in_length_order, read_padded, with_pattern
from meterread.models.patterns import ReadingPattern, canonical_pattern_text
from meterread.models.registry import load_reader


class RecordingReader:
    """Reads each image's first pixel value back as the text; records the batches it was given."""

    def __init__(self):
        self.batches = []

    def read(self, images, prompts):
        self.batches.append((len(images), list(prompts)))
        return [Prediction(text=str(int(image[0, 0, 0])), token_logprobs=(0.0,)) for image in images]


def images_numbered(count):
    return [np.full((4, 4, 3), i, np.uint8) for i in range(count)]


def test_read_padded_gives_the_model_one_shape_and_returns_only_real_rows():
    reader = RecordingReader()
    predictions = read_padded(reader, images_numbered(3), ["p"] * 3, batch_size=8)
    assert [p.text for p in predictions] == ["0", "1", "2"]
    assert reader.batches[0][0] == 8  # padded with copies of the last image


def test_read_padded_leaves_full_batches_alone():
    reader = RecordingReader()
    read_padded(reader, images_numbered(8), ["p"] * 8, batch_size=8)
    assert reader.batches[0][0] == 8


def test_read_in_length_order_batches_similar_prompts_and_restores_order():
    reader = RecordingReader()
    prompts = ["a much longer prompt", "p", "mid prompt", "q"]
    predictions = read_in_length_order(reader, images_numbered(4), prompts)
    assert [p.text for p in predictions] == ["0", "1", "2", "3"]
    assert reader.batches[0][1] == ["p", "q", "mid prompt", "a much longer prompt"]


def test_compile_option_sets_a_static_cache(tiny_paligemma):
    reader = load_reader(ModelSpec(family="paligemma", base=tiny_paligemma, device="cpu", compile=True))
    assert reader.model.generation_config.cache_implementation == "static"  # compiled lazily on first call


def test_a_family_that_does_not_fit_the_checkpoint_is_one_clear_line(tiny_paligemma):
    import pytest

    from meterread.models.base import ModelLoadError

    with pytest.raises(ModelLoadError, match=r"--family florence2 does not fit .*'paligemma'; use --family paligemma"):
        load_reader(ModelSpec(family="florence2", base=tiny_paligemma, device="cpu"))


def test_cuda_on_a_machine_without_it_is_refused_before_loading(tiny_paligemma, monkeypatch):
    import pytest
    import torch

    from meterread.models.base import ModelLoadError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load_reader(ModelSpec(base=tiny_paligemma, device="cuda"))


def test_a_model_carries_its_recommended_threshold(tiny_paligemma, tmp_path):
    import json
    import shutil

    from meterread.config import effective_min_confidence

    assert load_reader(ModelSpec(base=tiny_paligemma, device="cpu")).min_confidence is None
    recommending = tmp_path / "model"
    shutil.copytree(tiny_paligemma, recommending)
    (recommending / "meterread.json").write_text(json.dumps({"crop_display": False, "min_confidence": 0.8}))
    reader = load_reader(ModelSpec(base=str(recommending), device="cpu"))
    assert reader.min_confidence == 0.8
    assert effective_min_confidence(None, reader.min_confidence) == 0.8  # a run that gives none uses the model's
    assert effective_min_confidence(0.3, reader.min_confidence) == 0.3  # one given wins
    assert effective_min_confidence(None, None) == 0.5


def test_read_by_pattern_reads_each_image_within_its_own_pattern_and_keeps_the_input_order(tiny_ppocr):
    """A real (untrained, so unconstrained it reads anything) ppocr reader: each image's reading fits its own
    pattern, one model call per distinct pattern, predictions in the input order."""
    reader = load_reader(ModelSpec(family="ppocr", base=tiny_ppocr, device="cpu"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (reader.image_size, reader.image_size, 3), np.uint8) for _ in range(5)]
    patterns = ["3.1", None, "5", "3.1", "2.2"]
    calls = []

    def read(r, chunk, prompts):
        calls.append((r.spec.pattern, len(chunk)))
        return r.read(chunk, prompts)

    predictions = read_by_pattern(reader, images, [""] * 5, patterns, read)
    assert calls == [("3.1", 2), (None, 1), ("5", 1), ("2.2", 1)]
    for prediction, pattern in zip(predictions, patterns):
        if pattern:
            assert ReadingPattern.parse(pattern).is_complete(prediction.text), (pattern, prediction.text)
    alone = [reader.read([image], [""])[0].text for image in images]
    unconstrained = [p.text for p, pattern in zip(predictions, patterns) if pattern is None]
    assert unconstrained == [alone[1]]  # the image without a pattern, read as the reader reads it
    assert reader.spec.pattern is None  # the reader itself is untouched
    assert with_pattern(reader, None) is reader and with_pattern(reader, "4").model is reader.model  # same weights


def test_a_reading_pattern_is_written_one_way():
    texts = ("5.0", " 05", "6.1", "06.10", None, "")
    assert [canonical_pattern_text(text) for text in texts] == ["5", "5", "6.1", "6.10", None, None]
