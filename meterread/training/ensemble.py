"""`meterread ensemble`: several full ppocr checkpoints copied into one directory that reads as one model
(`meterread.models.ppocr_ensemble`). File work only: no weights are loaded."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from meterread.models.ppocr import FAMILY
from meterread.models.ppocr_ensemble import shared_layout
from meterread.models.registry import ENSEMBLE_FILE
from meterread.training.checkpoints import STATE_FILE, copy_checkpoint_files


def build_ensemble(out_dir: str | Path, checkpoints: Sequence[str | Path], min_confidence: float | None = None) -> Path:
    """Copy the files of each checkpoint folder (not a run's trainer state) into `out_dir`/member-N/, in the
    order given (ties between readings go to the earlier member), and write `ensemble.json` (members, where each
    came from) and `meterread.json` (their shared layout and `min_confidence`: the ensemble's own, measured with
    `meterread eval` on validation data; no member's carries over). Written beside `out_dir` and renamed into place,
    so a failed build leaves nothing that loads. Raises ValueError as `shared_layout` does, for a `min_confidence`
    outside [0, 1], an `out_dir` that is not empty or lies inside a checkpoint."""
    paths = [Path(checkpoint) for checkpoint in checkpoints]
    layout = shared_layout(paths)
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence {min_confidence} is a probability: give it in [0, 1]")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: build an ensemble into a new directory")
    if any(out.resolve().is_relative_to(path.resolve()) for path in paths):
        raise ValueError(f"{out} lies inside a member checkpoint: build the ensemble elsewhere")
    partial = out.with_name(f"{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    names = [f"member-{index}" for index in range(len(paths))]
    for path, name in zip(paths, names):
        (partial / name).mkdir(parents=True)
        copy_checkpoint_files(path, partial / name, frozenset({STATE_FILE}))
    manifest = {"model_type": FAMILY, "members": names, "sources": [str(path.resolve()) for path in paths]}
    (partial / ENSEMBLE_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    settings = {**layout.to_dict(), **({} if min_confidence is None else {"min_confidence": min_confidence})}
    (partial / "meterread.json").write_text(json.dumps(settings, indent=2) + "\n")
    if out.exists():
        out.rmdir()  # empty, checked above
    partial.rename(out)
    return out
