"""The one table of model families: family name -> the module that implements it. Imports without torch.

A family module exports everything the rest of the code needs about its family (`FAMILY_INTERFACE`):

- `load(spec) -> Reader`: the reader of a checkpoint (`meterread.models.base.Reader`); loading, reading, training
  and the product bench go through it;
- `LORA_TARGETS`: names of the modules a LoRA adapter wraps (training);
- `build_tiny(out_dir, size=None, seed=0) -> Path`: a tiny random-weight model saved with `save_pretrained`, `size` a
  `meterread.models.tiny.TinySize` (tests, the demo model);
- `MODEL_CLASS`: the transformers model class of the family;
- `architecture(size) -> Architecture`: `size` "full" (the published model) or "tiny" (the project's tiny one) as a
  config with its input side and image-token count (`meterread.models.base.Architecture`; the architecture bench);
- `synthetic_inputs(arch, batch_size, device, dtype, prompt_tokens=8) -> dict`: fixed-shape random `generate`
  inputs for `MODEL_CLASS` built from `arch.config` (the architecture bench).

Its default prompt lives in `meterread.models.prompts`. Adding a family is one module plus one line here (or a call
to `register_family`); nothing else dispatches on a family's name.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

FAMILY_INTERFACE = ("load", "LORA_TARGETS", "build_tiny", "MODEL_CLASS", "architecture", "synthetic_inputs")

FAMILY_MODULES: dict[str, str] = {
    "paligemma": "meterread.models.paligemma",
    "florence2": "meterread.models.florence2",
    "ppocr": "meterread.models.ppocr",
}


def register_family(name: str, module: str) -> None:
    """Make `name` a family implemented by `module` (a dotted path to a module exporting `FAMILY_INTERFACE`)."""
    FAMILY_MODULES[name] = module


def known_families() -> tuple[str, ...]:
    return tuple(FAMILY_MODULES)


ENSEMBLE_FILE = "ensemble.json"


def is_ensemble(base: str | Path) -> bool:
    """Whether `base` is an ensemble directory (it holds an `ensemble.json`)."""
    return (Path(base) / ENSEMBLE_FILE).is_file()


def refuse_ensemble(base: str | Path, action: str) -> None:
    """Raise ValueError when `base` is an ensemble: `action` (train, average, ...) works on one checkpoint."""
    if is_ensemble(base):
        raise ValueError(
            f"{base} is an ensemble of checkpoints: {action} one of its members, then build it again "
            "(meterread ensemble)"
        )


def ensemble_members(base: str | Path) -> list[Path] | None:
    """The member checkpoint directories of an ensemble directory (its `ensemble.json`: `members`, relative to
    it; `meterread ensemble` writes one), in their order; None when `base` is no ensemble. Raises ValueError for an
    unreadable ensemble.json, one naming no members, a member outside `base` or a member folder that is missing."""
    manifest = Path(base) / ENSEMBLE_FILE
    if not is_ensemble(base):
        return None
    try:
        names = json.loads(manifest.read_text())["members"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{manifest}: not an ensemble manifest with a `members` list ({error})") from error
    if not names or any(
        not isinstance(name, str) or not name or Path(name).name != name or name == ".." for name in names
    ):
        raise ValueError(f"{manifest}: members {names} must be folder names inside {base}")
    members = [Path(base) / name for name in names]
    if any(not member.is_dir() for member in members):
        raise ValueError(f"{manifest}: members {names} are not all directories under {base}")
    inside = Path(base).resolve()
    if any(member.resolve() == inside or not member.resolve().is_relative_to(inside) for member in members):
        raise ValueError(f"{manifest}: members {names} must be folders inside {base} (a link out or back is not)")
    return members


def checkpoint_model_type(base: str) -> str | None:
    """`model_type` from a checkpoint's config.json (an ensemble's: its ensemble.json): a local directory, else a
    hub id's cached copy (offline); None when there is none."""
    config = Path(base) / "config.json"
    if not config.is_file() and is_ensemble(base):
        config = Path(base) / ENSEMBLE_FILE
    if not config.is_file():
        config = _cached_hub_config(base)
    if config is None:
        return None
    try:
        return json.loads(config.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def is_hub_id(base: str) -> bool:
    """Whether `base` can name a hub repository at all (huggingface_hub's own rule: `name` or `namespace/name`)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(base)
    except HFValidationError:
        return False
    return True


def _cached_hub_config(base: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        found = try_to_load_from_cache(base, "config.json")
    except HFValidationError:  # not a hub id (a path that does not exist, a URL)
        return None
    return Path(found) if isinstance(found, str) else None


def checkpoint_family(base: str) -> str | None:
    """The family a checkpoint says it is (its config.json `model_type`, when that names a family), else None."""
    model_type = checkpoint_model_type(base)
    return model_type if model_type in FAMILY_MODULES else None


def family_module(name: str) -> ModuleType:
    """The module implementing family `name` (imported on first use). Raises ValueError for an unknown family and
    TypeError for a module that lacks part of `FAMILY_INTERFACE` (naming what is missing)."""
    if name not in FAMILY_MODULES:
        raise ValueError(f"model family {name!r} is not one of {', '.join(FAMILY_MODULES)}")
    module = importlib.import_module(FAMILY_MODULES[name])
    missing = [export for export in FAMILY_INTERFACE if not hasattr(module, export)]
    if missing:
        raise TypeError(f"family module {module.__name__} (family {name!r}) does not export {', '.join(missing)}")
    return module


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
