"""The one table of model families: family name -> the module that implements it. Imports without torch.

A family module exports `load(spec) -> Reader`, `LORA_TARGETS` (module names a LoRA adapter wraps) and
`build_tiny(out_dir, size, seed) -> Path` (a tiny random-weight model saved with `save_pretrained`, for tests); its
default prompt lives in `meterread.models.prompts`. Adding a family is one module plus one line here (or a call to
`register_family`)."""

from __future__ import annotations

import importlib
from types import ModuleType

FAMILY_MODULES: dict[str, str] = {
    "paligemma": "meterread.models.paligemma",
    "florence2": "meterread.models.florence2",
}


def register_family(name: str, module: str) -> None:
    """Make `name` loadable from `module` (a dotted path exporting load, LORA_TARGETS and build_tiny)."""
    FAMILY_MODULES[name] = module


def known_families() -> tuple[str, ...]:
    return tuple(FAMILY_MODULES)


def family_module(name: str) -> ModuleType:
    """The module implementing family `name` (imported on first use). Raises ValueError for an unknown family."""
    if name not in FAMILY_MODULES:
        raise ValueError(f"model family {name!r} is not one of {', '.join(FAMILY_MODULES)}")
    return importlib.import_module(FAMILY_MODULES[name])


def load_reader(spec):
    """Load the reader for `spec` through its family's module: the family is checked against the checkpoint and
    the device is checked before any weights are read. A model reference (`registry://URL`) is resolved first
    (`meterread.training.registry.resolve_spec`); a run resolves it once at its start and loads the resolved spec."""
    from meterread.models.base import check_family, resolve_device
    from meterread.training.registry import resolve_spec

    spec = resolve_spec(spec.validate())
    check_family(spec)
    resolve_device(spec.device)
    return family_module(spec.family).load(spec)
