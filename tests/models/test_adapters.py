"""LoRA adapters: trained for a few steps they change the reading; merged == unmerged; strict loading."""

from pathlib import Path

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import PaliGemmaForConditionalGeneration

from meterread.config import ModelSpec
from meterread.models.generation import pixel_values
from meterread.models.paligemma import LORA_TARGETS, load_processor
from meterread.models.registry import load_reader

IMAGES = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(2)]


@pytest.fixture(scope="module")
def trained_adapter(tiny_paligemma, tmp_path_factory):
    """A LoRA adapter trained 20 steps to answer '42' (processor-built labels: prompt masked, <eos> kept)."""
    torch.manual_seed(0)
    processor = load_processor(tiny_paligemma)
    processor.tokenizer.padding_side = "right"
    model = PaliGemmaForConditionalGeneration.from_pretrained(tiny_paligemma)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(LORA_TARGETS)))
    batch = processor(
        images=IMAGES,
        text=["<image>extract meter value from this image"] * 2,
        suffix=["42", "42"],
        return_tensors="pt",
        padding="longest",
    )
    assert (batch["labels"][0] != -100).sum() == 3  # "4", "2", <eos>
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(20):
        loss = peft_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out, safe_serialization=True)
    return str(out), peft_model


def test_adapter_changes_output_and_merges_faithfully(tiny_paligemma, trained_adapter):
    adapter_dir, peft_model = trained_adapter
    plain = load_reader(ModelSpec(base=tiny_paligemma, device="cpu"))
    tuned = load_reader(ModelSpec(base=tiny_paligemma, adapter=adapter_dir, device="cpu"))
    assert tuned.fingerprint != plain.fingerprint and tuned.adapter_id == adapter_dir
    prompts = [tuned.default_prompt] * 2
    assert [p.text for p in tuned.read(IMAGES, prompts)] == ["42", "42"]
    assert [p.text for p in plain.read(IMAGES, prompts)] != ["42", "42"]

    inputs = tuned.prepare(IMAGES, prompts)
    peft_model.eval()
    with torch.no_grad():
        merged = tuned.model(**inputs).logits
        unmerged = peft_model(**inputs).logits
    assert torch.allclose(merged, unmerged, atol=1e-4)


def test_adapter_for_another_architecture_is_refused(tiny_paligemma, tiny_florence2, trained_adapter):
    adapter_dir, _ = trained_adapter
    with pytest.raises(ValueError, match="does not fit"):
        load_reader(ModelSpec(family="florence2", base=tiny_florence2, adapter=adapter_dir, device="cpu"))


def test_missing_adapter_is_a_clear_error(tiny_paligemma, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_reader(ModelSpec(base=tiny_paligemma, adapter=str(tmp_path), device="cpu"))


def test_pixel_values_normalise_without_pil():
    tensor = pixel_values([np.full((2, 2, 3), 255, np.uint8)], [0.5] * 3, [0.5] * 3)
    assert tensor.shape == (1, 3, 2, 2) and torch.allclose(tensor, torch.ones_like(tensor))


def test_adapter_from_s3_is_downloaded_once_into_the_cache(
    tiny_paligemma, trained_adapter, s3_bucket, tmp_path, monkeypatch
):
    adapter_dir, _ = trained_adapter
    fs, bucket = s3_bucket
    fs.put(adapter_dir, f"{bucket}/adapters/v1", recursive=True)
    monkeypatch.setenv("METERREAD_CACHE", str(tmp_path / "cache"))
    reader = load_reader(ModelSpec(base=tiny_paligemma, adapter=f"s3://{bucket}/adapters/v1", device="cpu"))
    assert [p.text for p in reader.read(IMAGES, [reader.default_prompt] * 2)] == ["42", "42"]
    cached = list((tmp_path / "cache" / "adapters").glob("*/adapter_model.safetensors"))
    assert len(cached) == 1


def test_florence2_adapter_changes_output_and_merges_faithfully(tiny_florence2, tmp_path):
    from meterread.models.florence2 import LORA_TARGETS as FLORENCE_TARGETS

    torch.manual_seed(0)
    trainer = load_reader(ModelSpec(family="florence2", base=tiny_florence2, device="cpu"))
    peft_model = get_peft_model(trainer.model, LoraConfig(r=4, lora_alpha=8, target_modules=list(FLORENCE_TARGETS)))
    trainer.model = peft_model
    batch = trainer.training_batch(IMAGES, [trainer.default_prompt] * 2, ["42", "42"])
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(30):
        peft_model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    peft_model.save_pretrained(tmp_path, safe_serialization=True)
    plain = load_reader(ModelSpec(family="florence2", base=tiny_florence2, device="cpu"))
    tuned = load_reader(ModelSpec(family="florence2", base=tiny_florence2, adapter=str(tmp_path), device="cpu"))
    prompts = [tuned.default_prompt] * 2
    assert [p.text for p in tuned.read(IMAGES, prompts)] == ["42", "42"]
    assert [p.text for p in plain.read(IMAGES, prompts)] != ["42", "42"]
    inputs = tuned.training_batch(IMAGES, prompts, ["42", "42"])
    peft_model.eval()
    with torch.no_grad():
        assert torch.allclose(tuned.model(**inputs).logits, peft_model(**inputs).logits, atol=1e-4)


def test_a_model_download_survives_a_storage_blip(s3_bucket, tmp_path, monkeypatch):
    """The S3 client does not retry by itself: each file of a model download is retried by the storage helper, and
    streamed to disk rather than held in memory."""
    from meterread import storage
    from meterread.models.loading import fetch_directory
    from tests.factories import failing_once

    fs, bucket = s3_bucket
    monkeypatch.setenv("METERREAD_CACHE", str(tmp_path / "cache"))
    fs.pipe(f"{bucket}/adapters/v1/adapter_config.json", b"{}")
    fs.pipe(f"{bucket}/adapters/v1/adapter_model.safetensors", b"weights")
    source_fs, _ = storage.resolve(f"s3://{bucket}/adapters/v1")
    blip_once = failing_once(source_fs.get_file, ConnectionError("reset by peer"))
    calls = blip_once.calls
    monkeypatch.setattr(source_fs, "get_file", blip_once)
    monkeypatch.setattr(storage, "retry_pause", lambda _: None)
    local = Path(fetch_directory(f"s3://{bucket}/adapters/v1", "adapter_config.json"))
    assert (local / "adapter_model.safetensors").read_bytes() == b"weights" and len(calls) == 3
