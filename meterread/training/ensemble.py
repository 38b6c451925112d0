"""`meterread ensemble`: several full ppocr checkpoints copied into one directory that reads as one model
(`meterread.models.ppocr_ensemble`). File work only: no weights are loaded."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from meterread.models.registry import ENSEMBLE_FILE, ensemble_members
from meterread.preprocess import InputLayout
from meterread.training.soup import WEIGHTS_FILE

ENSEMBLE_FAMILY = "ppocr"  # the one family whose readings can be scored by every member (CTC likelihoods)


def member_name(index: int) -> str:
    return f"member-{index}"


def check_members(checkpoints: Sequence[Path]) -> InputLayout:
    """The input layout the checkpoints share. Raises ValueError for fewer than two, one that is not a full ppocr
    checkpoint (config.json `model_type` ppocr and model.safetensors) or is an ensemble itself, or layouts that
    differ (meterread.json: display crop, rows, local contrast; the square may differ)."""
    if len(checkpoints) < 2:
        raise ValueError(f"an ensemble needs two or more checkpoints, got {len(checkpoints)}")
    layouts = []
    for path in checkpoints:
        if ensemble_members(path) is not None:
            raise ValueError(f"{path} is an ensemble itself: name its members instead")
        config = _json(path / "config.json")
        if config.get("model_type") != ENSEMBLE_FAMILY or not (path / WEIGHTS_FILE).is_file():
            raise ValueError(f"{path} is not a full {ENSEMBLE_FAMILY} checkpoint (config.json and {WEIGHTS_FILE})")
        layouts.append(InputLayout.from_dict(_json(path / "meterread.json")))
    if any(layout != layouts[0] for layout in layouts):
        raise ValueError(
            f"the checkpoints prepare photos differently (meterread.json): {[layout.to_dict() for layout in layouts]}"
        )
    return layouts[0]


def build_ensemble(out_dir: str | Path, checkpoints: Sequence[str | Path], min_confidence: float | None = None) -> Path:
    """Copy each checkpoint into `out_dir`/member-N/ (in the order given: ties between readings go to the earlier
    member) and write `ensemble.json` (members, where each came from) and `meterread.json` (their shared layout and
    `min_confidence`, which is the ensemble's own: measure it with `meterread eval` on validation data; no member's
    carries over). Raises ValueError as `check_members` does, or when `out_dir` is not empty."""
    paths = [Path(checkpoint) for checkpoint in checkpoints]
    layout = check_members(paths)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: build an ensemble into a new directory")
    out.mkdir(parents=True, exist_ok=True)
    names = [member_name(index) for index in range(len(paths))]
    for path, name in zip(paths, names):
        shutil.copytree(path, out / name)
    manifest = {"model_type": ENSEMBLE_FAMILY, "members": names, "sources": [str(path) for path in paths]}
    (out / ENSEMBLE_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    settings = {**layout.to_dict(), **({} if min_confidence is None else {"min_confidence": min_confidence})}
    (out / "meterread.json").write_text(json.dumps(settings, indent=2) + "\n")
    return out


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
