"""Weight averaging of fine-tuned checkpoints of one lineage (a "model soup", Wortsman et al. 2022; WiSE-FT):
`meterread average OUT CHECKPOINT...`. Two runs that start from the same weights and learn different things (e.g.
with and without augmentation) often read better averaged than either alone.

`average_state_dicts` is pure; `average_checkpoints` reads and writes full checkpoints (model.safetensors), never
LoRA adapters (average those merged, or not at all).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from meterread.models.loading import WEIGHTS_FILE
from meterread.models.registry import refuse_ensemble
from meterread.preprocess import InputLayout
from meterread.training.checkpoints import RUN_FILES, copy_checkpoint_files

# Files of the last checkpoint that do not describe the averaged weights: its weights and its run files (the rest,
# config, tokenizer, processor, meterread.json, come along so the average loads like its ingredients).
WEIGHT_FILES = {WEIGHTS_FILE, "model.safetensors.index.json", "adapter_model.safetensors", "adapter_config.json"}
NOT_COPIED = RUN_FILES | WEIGHT_FILES
VOLATILE_CONFIG = ("_name_or_path", "transformers_version", "torch_dtype", "dtype")
COUNTERS = ("num_batches_tracked",)  # integer tensors that may differ: the last checkpoint's is kept
SOUP_FILE = "soup.json"


def average_state_dicts(
    states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
    """The weighted mean of each floating-point tensor (in float32, back in the first state's dtype); other tensors
    must be equal, except counters (BatchNorm's `num_batches_tracked`), taken from the last state. `weights` default
    to equal and are normalised to sum 1. Raises ValueError on fewer than two states, differing keys, shapes or
    non-float tensors, or bad weights."""
    if len(states) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(states)}")
    shares = normalised_weights(len(states), weights)
    keys = set(states[0])
    for index, state in enumerate(states[1:], 1):
        if set(state) != keys:
            raise ValueError(f"checkpoint {index} has other tensors than checkpoint 0: not one architecture")
    averaged = {}
    for key in states[0]:
        tensors = [state[key] for state in states]
        if any(tensor.shape != tensors[0].shape for tensor in tensors):
            raise ValueError(f"tensor {key!r} has different shapes across checkpoints")
        if not tensors[0].is_floating_point():
            if not key.endswith(COUNTERS) and any(not torch.equal(t, tensors[0]) for t in tensors):
                raise ValueError(f"non-float tensor {key!r} differs across checkpoints: it cannot be averaged")
            averaged[key] = tensors[-1].clone()
            continue
        mean = sum(share * t.float() for share, t in zip(shares, tensors))
        averaged[key] = mean.to(tensors[0].dtype).contiguous()
    return averaged


def normalised_weights(count: int, weights: Sequence[float] | None) -> list[float]:
    """One share per checkpoint, summing to 1 (equal by default). Raises ValueError on a wrong count, a negative
    weight or all zero."""
    weights = [1.0] * count if weights is None else list(weights)
    if len(weights) != count or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"need one non-negative weight per checkpoint, not all zero (got {weights})")
    return [w / sum(weights) for w in weights]


def average_checkpoints(
    out_dir: str | Path, checkpoints: Sequence[str | Path], weights: Sequence[float] | None = None
) -> Path:
    """Average full checkpoints into `out_dir`: the mean weights, the last checkpoint's config, tokenizer or
    processor and preprocessing settings, and `soup.json` (ingredients, weights, each one's training recipe).
    Raises ValueError when a checkpoint has no full weights or the checkpoints disagree on architecture or
    preprocessing."""
    from safetensors.torch import load_file, save_file

    paths = [Path(checkpoint) for checkpoint in checkpoints]
    shares = normalised_weights(len(paths), weights)  # bad weights fail before any file is read
    for path in paths:
        refuse_ensemble(path, "average")
        if not (path / WEIGHTS_FILE).is_file():
            raise ValueError(f"{path} has no {WEIGHTS_FILE}: only full, unsharded checkpoints can be averaged")
    configs = [_json(path / "config.json") for path in paths]
    if any(config.get("model_type") != configs[0].get("model_type") for config in configs):
        raise ValueError(f"checkpoints of different model types: {[c.get('model_type') for c in configs]}")
    if any(_architecture(config) != _architecture(configs[0]) for config in configs):
        raise ValueError("checkpoints with different config.json (architecture): average one lineage only")
    layouts = [InputLayout.from_dict(_json(path / "meterread.json")) for path in paths]
    if any(layout != layouts[-1] for layout in layouts):
        raise ValueError("checkpoints read differently prepared inputs (meterread.json): average like with like")
    averaged = average_state_dicts([load_file(path / WEIGHTS_FILE) for path in paths], shares)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(averaged, out / WEIGHTS_FILE, metadata={"format": "pt"})
    copy_checkpoint_files(paths[-1], out, NOT_COPIED)
    record = {
        "ingredients": [str(path) for path in paths],
        "weights": shares,
        "recipes": [_json(path / "train_config.json") or None for path in paths],  # how each ingredient was trained
    }
    (out / SOUP_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return out


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _architecture(config: dict) -> dict:
    return {key: value for key, value in config.items() if key not in VOLATILE_CONFIG}
