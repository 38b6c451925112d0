import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from meterread.config import ModelSpec
from meterread.models.base import Reader
from meterread.models.decoding import ReadingPattern
from meterread.models.prompts import DEFAULT_PROMPTS
from meterread.models.registry import load_reader
from meterread.preprocess import preprocess_photo
from tests.factories import meter_jpeg

FAMILIES = ["paligemma", "florence2", "ppocr"]


@pytest.fixture(scope="module", params=FAMILIES)
def reader(request):
    base = request.getfixturevalue(f"tiny_{request.param}")
    return load_reader(ModelSpec(family=request.param, base=base, device="cpu"))


def test_loads_through_the_spec_path_and_reads_a_batch(reader):
    assert isinstance(reader, Reader) and reader.image_size == 64 and reader.fingerprint
    photos = [
        meter_jpeg(f"0123{i}.5", seed=i, size=size)
        for i, size in enumerate([(320, 240), (640, 480), (200, 300), (1024, 768)])
    ]
    images = [preprocess_photo(photo, reader.image_size).image for photo in photos]
    predictions = reader.read(images, [reader.default_prompt] * 4)
    assert len(predictions) == 4
    for prediction in predictions:
        assert re.fullmatch(r"\d+([.,]\d+)?", prediction.text), prediction.text
        shortest = 1 if reader.family == "ppocr" else 2  # a VLM's reading ends in EOS; a CTC path has none
        assert len(prediction.token_logprobs) >= shortest and all(lp <= 0 for lp in prediction.token_logprobs)
        assert prediction.elapsed_s > 0


def test_left_padding_gives_the_same_text_alone_and_in_a_batch(reader):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    prompts = ["extract meter value from this image", "x", "read the register please"]
    batch = reader.read(images, prompts)
    for image, prompt, batched in zip(images, prompts, batch):
        alone = reader.read([image], [prompt])[0]
        assert alone.text == batched.text
        assert np.allclose(alone.token_logprobs, batched.token_logprobs, atol=1e-4)


def test_rejects_mismatched_prompts_and_reads_an_empty_batch_as_nothing(reader):
    with pytest.raises(ValueError, match="1 images but 0 prompts"):
        reader.read([np.zeros((64, 64, 3), np.uint8)], [])
    assert reader.read([], []) == []


def test_prompt_comes_from_the_spec_and_the_device_follows_the_model(reader, request):
    base = request.getfixturevalue(f"tiny_{reader.family}")
    assert reader.default_prompt == DEFAULT_PROMPTS[reader.family]
    prompted = load_reader(ModelSpec(family=reader.family, base=base, prompt="read the dial", device="cpu"))
    assert prompted.default_prompt == "read the dial" and prompted.fingerprint != reader.fingerprint
    assert reader.device == torch.device("cpu")
    moved = replace(reader, model=SimpleNamespace(device=torch.device("meta")))  # as training swaps in its model
    assert moved.device == torch.device("meta")


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), integer_digits=st.integers(1, 7), decimals=st.integers(0, 3))
def test_constrained_decoding_always_matches_the_pattern(request, family, seed, integer_digits, decimals):
    """Random weights and random images: the output still has exactly the requested shape."""
    pattern = f"{integer_digits}.{decimals}" if decimals else str(integer_digits)
    reader = _reader_with_pattern(family, request.getfixturevalue(f"tiny_{family}"), pattern)
    image = np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    text = reader.read([image], [reader.default_prompt])[0].text
    expected = rf"\d{{{integer_digits}}}" + (rf"[.,]\d{{{decimals}}}" if decimals else "")
    assert re.fullmatch(expected, text), (pattern, text)


_READERS: dict = {}


def _reader_with_pattern(family, base, pattern):
    if (family, pattern) not in _READERS:
        _READERS[family, pattern] = load_reader(ModelSpec(family=family, base=base, pattern=pattern, device="cpu"))
    return _READERS[family, pattern]


@pytest.mark.parametrize(
    ("pattern", "prefix", "is_prefix", "complete"),
    [
        (ReadingPattern(), "", True, False),
        (ReadingPattern(), "12", True, True),
        (ReadingPattern(), "12.", True, False),
        (ReadingPattern(), "12.3.", False, False),
        (ReadingPattern(), ".", False, False),
        (ReadingPattern.parse("5.1"), "01234", True, False),
        (ReadingPattern.parse("5.1"), "01234.5", True, True),
        (ReadingPattern.parse("5.1"), "0123.", False, False),
        (ReadingPattern.parse("5.1"), "012345", False, False),
        (ReadingPattern.parse("4"), "0123", True, True),
        (ReadingPattern.parse("4"), "0123.", False, False),
    ],
)
def test_reading_pattern_table(pattern, prefix, is_prefix, complete):
    assert (pattern.is_prefix(prefix), pattern.is_complete(prefix)) == (is_prefix, complete)


def test_spec_validation_is_actionable():
    with pytest.raises(ValueError, match="family"):
        ModelSpec(family="llava", base="x").validate()
    with pytest.raises(ValueError, match="pattern"):
        ModelSpec(base="x", pattern="six").validate()


def test_paligemma2_with_a_gemma2_decoder_loads_and_reads(tiny_paligemma, tmp_path):
    """PaliGemma 2's Gemma 2 decoder has no SDPA kernel (logit soft-capping): loading must not force SDPA."""
    import shutil

    import torch
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

    config = PaliGemmaConfig.from_pretrained(tiny_paligemma).to_dict()
    text = config["text_config"]
    text.update(
        model_type="gemma2",
        query_pre_attn_scalar=text["head_dim"],
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        sliding_window=64,
    )
    text.pop("layer_types", None)
    torch.manual_seed(0)
    model = PaliGemmaForConditionalGeneration(PaliGemmaConfig.from_dict(config))
    model.save_pretrained(tmp_path, safe_serialization=True)
    for name in ("processor_config.json", "tokenizer.json", "tokenizer_config.json"):
        if (source := Path(tiny_paligemma) / name).is_file():
            shutil.copy(source, tmp_path / name)
    reader = load_reader(ModelSpec(family="paligemma", base=str(tmp_path), device="cpu"))
    assert reader.model.config.text_config.model_type == "gemma2"
    image = preprocess_photo(meter_jpeg("01234.5", seed=1), reader.image_size).image
    (prediction,) = reader.read([image], [reader.default_prompt])
    assert re.fullmatch(r"\d+([.,]\d+)?", prediction.text), prediction.text


@pytest.mark.parametrize(
    ("pattern", "prefix", "shortest"),
    [
        (ReadingPattern(), "", 1),
        (ReadingPattern(), "12", 0),
        (ReadingPattern(), "12.", 1),
        (ReadingPattern(), "12.5", 0),
        (ReadingPattern.parse("5.1"), "", 7),
        (ReadingPattern.parse("5.1"), "012", 4),
        (ReadingPattern.parse("5.1"), "01234.", 1),
        (ReadingPattern.parse("5.1"), "01234.5", 0),
        (ReadingPattern.parse("4"), "01", 2),
        (ReadingPattern.parse("2.3"), "12.4", 2),
    ],
)
def test_shortest_completion_counts_the_characters_a_prefix_still_needs(pattern, prefix, shortest):
    assert pattern.shortest_completion(prefix) == shortest
