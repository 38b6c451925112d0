import numpy as np

from meterread.config import ModelSpec
from meterread.models.base import Prediction, read_in_length_order, read_padded
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
