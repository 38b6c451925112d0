"""One family registry: a new family is one module plus one registration, seen by loading, training, tiny models and
the architecture bench."""

import sys
import textwrap

import pytest

from meterread.bench import BenchConfig
from meterread.bench_architecture import bench_architecture
from meterread.config import LoraSettings, ModelSpec
from meterread.models.registry import (
    FAMILY_INTERFACE,
    FAMILY_MODULES,
    family_module,
    known_families,
    load_reader,
    register_family,
)
from meterread.models.tiny import build_tiny
from meterread.training.train import lora_targets

FAKE = textwrap.dedent(
    """
    from pathlib import Path

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from meterread.models.base import Architecture

    LORA_TARGETS = ("wq", "wv")
    MODEL_CLASS = GPT2LMHeadModel
    INPUT_BATCHES = []  # batch sizes synthetic_inputs was asked for

    def load(spec):
        return ("fake reader", spec.base)

    def build_tiny(out_dir, size=None, seed=0):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "config.json").write_text('{"model_type": "fakefamily"}')
        return Path(out_dir)

    def architecture(size):
        config = GPT2Config(vocab_size=64, n_positions=64, n_embd=16, n_layer={"tiny": 1, "full": 3}[size], n_head=2)
        return Architecture(config, image_size=8, image_tokens=3)

    def synthetic_inputs(arch, batch_size, device, dtype, prompt_tokens=8):
        INPUT_BATCHES.append(batch_size)
        ids = torch.full((batch_size, arch.image_tokens + prompt_tokens), 5, dtype=torch.long, device=device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    """
)


@pytest.fixture
def fake_family(tmp_path, monkeypatch):
    (tmp_path / "fakefamily_module.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("meterread.models.registry.FAMILY_MODULES", dict(FAMILY_MODULES))
    register_family("fakefamily", "fakefamily_module")
    yield "fakefamily"
    sys.modules.pop("fakefamily_module", None)


def test_a_registered_family_is_loaded_trained_and_built_through_the_registry(fake_family, tmp_path):
    assert "fakefamily" in known_families()
    model_dir = build_tiny(fake_family, tmp_path / "tiny")
    assert load_reader(ModelSpec(family=fake_family, base=str(model_dir), device="cpu")) == (
        "fake reader",
        str(model_dir),
    )
    assert lora_targets(fake_family, LoraSettings()) == ["wq", "wv"]


def test_a_registered_family_is_benchmarked_through_its_module(fake_family):
    """The architecture bench knows no family: it builds and feeds whatever the family module describes."""
    config = BenchConfig(family=fake_family, size="tiny", device="cpu", batch_size=3, repeats=2, new_tokens=4)
    results = bench_architecture(config, log=lambda *_: None)
    module = sys.modules["fakefamily_module"]
    tiny = module.MODEL_CLASS(module.architecture("tiny").config)
    assert results["family"] == fake_family and results["size"] == "tiny"
    assert results["parameters"] == sum(p.numel() for p in tiny.parameters())  # the tiny config, the family's class
    assert results["image_tokens"] == 3
    assert module.INPUT_BATCHES == [1, 3]  # one image for the FLOP count, then the benchmarked batch
    assert results["images_per_s"] > 0 and results["flops_per_image"] > 0


def test_a_family_module_missing_part_of_the_interface_is_refused_by_name(tmp_path, monkeypatch):
    (tmp_path / "halffamily_module.py").write_text("LORA_TARGETS = ()\n\ndef load(spec):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("meterread.models.registry.FAMILY_MODULES", dict(FAMILY_MODULES))
    register_family("halffamily", "halffamily_module")
    try:
        with pytest.raises(TypeError, match="does not export build_tiny, MODEL_CLASS, architecture, synthetic_inputs"):
            family_module("halffamily")
    finally:
        sys.modules.pop("halffamily_module", None)


def test_unknown_family_is_refused_by_name():
    with pytest.raises(ValueError, match="'nofamily' is not one of paligemma, florence2"):
        family_module("nofamily")


def test_shipped_families_export_what_the_registry_promises():
    for name in ("paligemma", "florence2"):
        module = family_module(name)
        assert all(hasattr(module, export) for export in FAMILY_INTERFACE)
        assert callable(module.load) and callable(module.build_tiny) and module.LORA_TARGETS
        assert module.architecture("tiny").config.model_type == module.MODEL_CLASS.config_class.model_type == name


def test_registry_and_settings_import_without_torch():
    import subprocess

    code = (
        "import sys, meterread.models.registry, meterread.models.base, meterread.models.tiny, meterread.config; "
        "heavy = {'torch', 'transformers'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
