"""Training checkpoints: what `best/` and `latest/` hold (weights, processor, input layout, recipe, metrics, dataset
manifest digest; `latest/` also the trainer state), how they are written whole (a run killed while saving leaves
the previous checkpoint, never half of two) and how a run resumes from `latest/`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from meterread.config import TrainConfig, TrainConfigError
from meterread.models.base import TrainableReader

PREPROCESS_FILE = "meterread.json"
STATE_FILE = "trainer_state.pt"
# Files of a checkpoint that describe its training run, not the model it holds
RUN_FILES = frozenset({STATE_FILE, "metrics.json", "train_config.json", "dataset_manifest.json"})


CHECKPOINTS = ("best", "latest")  # the folders a run writes in its output
PARTIAL, OLD = ".partial", ".old"  # suffixes of a checkpoint folder being written and of the one it replaces


def copy_checkpoint_files(source: Path, out: Path, skip: frozenset[str] = RUN_FILES) -> None:
    """Copy the files directly inside checkpoint folder `source` into `out`, except those named in `skip`."""
    for path in source.iterdir():
        if path.is_file() and path.name not in skip:
            shutil.copy2(path, out / path.name)


def save_checkpoint(
    directory: Path,
    reader: TrainableReader,
    config: TrainConfig,
    metrics: dict,
    manifest: str,
    trainer_state: dict | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Weights (adapter for LoRA, full model otherwise) + processor + recipe + metrics + dataset manifest hash, and
    with `trainer_state` the optimizer and counters (`save_trainer_state`): written into `DIRECTORY.partial/`, then
    put in place of `directory` (`publish`)."""
    partial = directory.with_name(directory.name + PARTIAL)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    reader.model.save_pretrained(partial, safe_serialization=True)
    reader.processor.save_pretrained(partial)
    (partial / PREPROCESS_FILE).write_text(json.dumps(config.layout.to_dict(), indent=2))
    (partial / "train_config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2))
    (partial / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (partial / "dataset_manifest.json").write_text(json.dumps({"digest": manifest}, indent=2))
    if trainer_state is not None:
        save_trainer_state(partial, trainer_state, optimizer)
    publish(partial, directory)


def publish(partial: Path, directory: Path) -> None:
    """Put the whole folder `partial` in place of `directory`; the one it replaces is set aside as `DIRECTORY.old/`
    and removed last, so a kill between the two renames leaves it there for `recover_checkpoints`."""
    old = directory.with_name(directory.name + OLD)
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    partial.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def recover_checkpoints(output: Path) -> list[str]:
    """Before a run starts in `output`: a checkpoint set aside by a `publish` that was killed (`NAME.old/` without
    `NAME/`, NAME one of CHECKPOINTS) goes back in place, and what a killed save left half written (`NAME.partial/`)
    is removed. Returns what was done, one line each, for the log."""
    done = []
    for name in CHECKPOINTS:
        directory, old, partial = (output / (name + suffix) for suffix in ("", OLD, PARTIAL))
        if old.is_dir() and not directory.exists():
            old.rename(directory)
            done.append(f"restored {directory} from {old.name} (a save was killed while replacing it)")
        shutil.rmtree(old, ignore_errors=True)
        if partial.is_dir():
            shutil.rmtree(partial)
            done.append(f"removed {partial} (a save was killed while writing it)")
    return done


def save_trainer_state(directory: Path, state: dict, optimizer: torch.optim.Optimizer) -> None:
    """The counters (`state`), the optimizer's state and torch's RNG beside a checkpoint, for `restore`."""
    torch.save({**state, "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}, directory / STATE_FILE)


def load_trainer_state(path: Path) -> dict:
    """Optimizer state, counters and RNG saved beside a checkpoint: tensors and plain data only
    (`weights_only=True`), so a planted pickle raises instead of running code."""
    return torch.load(path, weights_only=True)


def resume_point(config: TrainConfig) -> Path | None:
    """`OUTPUT/latest/` when the recipe resumes (`resume`) and that folder holds a trainer state, else None."""
    latest = Path(config.output) / "latest"
    return latest if config.resume and (latest / STATE_FILE).is_file() else None


# What a resumed run shares with its latest/: the start, the trained parts, the inputs. Anything else (epochs,
# max_steps, lr, vision_lr_scale, ...) may change on a resume.
SAME_RUN_KEYS = (
    "family", "base", "init_tiny", "strategy", "crop_display", "display_rows", "local_contrast", "pattern", "prompt",
)  # fmt: skip


def check_same_run(config: TrainConfig, manifest: str, latest: Path) -> None:
    """Raise TrainConfigError when `latest/` was trained from another start, trained other parts, saw other inputs
    (SAME_RUN_KEYS of its train_config.json, and `lora` for a LoRA run; a key it predates counts as its default) or
    other data (its dataset manifest digest): resuming would continue another run under this one's name."""
    saved = {**TrainConfig().model_dump(mode="json"), **json.loads((latest / "train_config.json").read_text())}
    current = config.model_dump(mode="json")
    keys = SAME_RUN_KEYS + (("lora",) if config.strategy == "lora" else ())
    changes = [f"{key} {saved[key]!r} -> {current[key]!r}" for key in keys if saved[key] != current[key]]
    digest = json.loads((latest / "dataset_manifest.json").read_text())["digest"]
    if digest != manifest:
        changes.append(f"dataset manifest {digest} -> {manifest}")
    if changes:
        raise TrainConfigError(
            f"cannot resume {latest}: it was trained as another run ({'; '.join(changes)}); "
            "train into another output, or start from it with base="
        )


def restore(reader: TrainableReader, optimizer: torch.optim.Optimizer, latest: Path) -> dict:
    """Load `latest/` weights (adapter or full), optimizer state, counters and RNG. The optimizer keeps its own
    groups' `lr_scale` (the recipe's `vision_lr_scale`, not the saved run's); a checkpoint with another number of
    groups (trained with or without a `vision_lr_scale`) raises TrainConfigError before anything is loaded."""
    from safetensors.torch import load_file

    state = load_trainer_state(latest / STATE_FILE)
    scales = [group.get("lr_scale", 1.0) for group in optimizer.param_groups]
    if len(state["optimizer"]["param_groups"]) != len(scales):
        message = f"cannot resume {latest} with vision_lr_scale {min(scales)} (it was trained with another)"
        raise TrainConfigError(message)
    if (latest / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(reader.model, load_file(str(latest / "adapter_model.safetensors")))
    else:  # through from_pretrained: it maps the saved (checkpoint-format) key names back to the model's
        saved = type(reader.model).from_pretrained(latest, dtype=reader.model.dtype, use_safetensors=True)
        reader.model.load_state_dict(saved.state_dict(), strict=True)
    optimizer.load_state_dict(state.pop("optimizer"))
    for group, scale in zip(optimizer.param_groups, scales):
        group["lr_scale"] = scale
    torch.set_rng_state(state.pop("rng"))
    return state
