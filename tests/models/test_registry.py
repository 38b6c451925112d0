"""One family registry: a new family is one module plus one registration, seen by loading, training and tiny."""

import sys
import textwrap

import pytest

from meterread.config import LoraSettings, ModelSpec
from meterread.models.registry import FAMILY_MODULES, family_module, known_families, load_reader, register_family
from meterread.models.tiny import build_tiny
from meterread.training.train import lora_targets

FAKE = textwrap.dedent(
    """
    from pathlib import Path

    LORA_TARGETS = ("wq", "wv")

    def load(spec):
        return ("fake reader", spec.base)

    def build_tiny(out_dir, size=None, seed=0):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "config.json").write_text('{"model_type": "fakefamily"}')
        return Path(out_dir)
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


def test_unknown_family_is_refused_by_name():
    with pytest.raises(ValueError, match="'nofamily' is not one of paligemma, florence2"):
        family_module("nofamily")


def test_shipped_families_export_what_the_registry_promises():
    for name in ("paligemma", "florence2"):
        module = family_module(name)
        assert callable(module.load) and callable(module.build_tiny) and module.LORA_TARGETS


def test_registry_and_settings_import_without_torch():
    import subprocess

    code = (
        "import sys, meterread.models.registry, meterread.models.base, meterread.config; "
        "heavy = {'torch', 'transformers'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
