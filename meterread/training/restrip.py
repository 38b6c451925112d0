"""A ppocr checkpoint set to read the strip at another size: `meterread restrip SOURCE OUT --strip-width W
--strip-height H [--image-size S]`. The recogniser's weights do not depend on the strip's size (convolutions, a neck
over the columns without position embeddings, one head per column), so a checkpoint trained at 48 x 320 reads 64 x
424 as it is and trains on at that size (docs/training.md "The taller strip from the bundle"). `image_size` is the
square the photo is folded into on the way (two rows: an (S / 2) x 2S strip, then scaled to the strip): at 128 a
424 px strip is drawn from 256 px across, at 212 from 424 (docs/training.md "The square the strip passes through").

`restripped_config` is pure; `restrip_checkpoint` reads and writes checkpoint folders.
"""

from __future__ import annotations

import json
from pathlib import Path

from meterread.models.ppocr_import import check_input_shape
from meterread.models.ppocr_network import PPOCRConfig
from meterread.models.registry import refuse_ensemble
from meterread.training.checkpoints import copy_checkpoint_files

RESTRIP_FILE = "restrip.json"
DEFAULTS = PPOCRConfig()  # what a config.json without a key means


def restripped_config(config: dict, strip_width: int, strip_height: int, image_size: int | None = None) -> dict:
    """`config` (a ppocr config.json) set to read `strip_height` x `strip_width`, from a square of `image_size`
    (None: the one it has). Raises ValueError for another model type or a size `check_input_shape` refuses."""
    if config.get("model_type") != "ppocr":
        raise ValueError(f"only ppocr checkpoints read a strip; this one is {config.get('model_type')!r}")
    image_size = square_of(config) if image_size is None else image_size
    check_input_shape(image_size, strip_width, strip_height)
    return {**config, "image_size": image_size, "strip_width": strip_width, "strip_height": strip_height}


def square_of(config: dict) -> int:
    """The square input side of a ppocr config.json (PPOCRConfig's default where the key is missing)."""
    return int(config.get("image_size", DEFAULTS.image_size))


def strip_of(config: dict) -> list[int]:
    """[height, width] of the strip a ppocr config.json reads (PPOCRConfig's defaults where a key is missing)."""
    return [
        int(config.get("strip_height", DEFAULTS.strip_height)),
        int(config.get("strip_width", DEFAULTS.strip_width)),
    ]


def restrip_checkpoint(
    source: str | Path, out_dir: str | Path, strip_width: int, strip_height: int, image_size: int | None = None
) -> Path:
    """Copy the full ppocr checkpoint `source` into the new or empty folder `out_dir` set to read `strip_height` x
    `strip_width` from a square of `image_size` (None: unchanged), with `restrip.json` (source, strip and square
    before and after); its run files (trainer state, metrics)
    stay behind. Raises ValueError for a folder without a ppocr config and full weights (a LoRA adapter: merge it
    first), an `out_dir` that holds files, or a size the recogniser cannot read; nothing is written then."""
    source, out = Path(source), Path(out_dir)
    refuse_ensemble(source, "restrip")
    if not (source / "config.json").is_file() or not (source / "model.safetensors").is_file():
        raise ValueError(f"{source} is not a full checkpoint (config.json and model.safetensors; not an adapter)")
    if out.resolve() == source.resolve():
        raise ValueError("restrip writes a new folder: OUT must not be SOURCE")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: restrip writes into a new or empty folder (remove it first)")
    config = json.loads((source / "config.json").read_text())
    restripped = restripped_config(config, strip_width, strip_height, image_size)
    out.mkdir(parents=True, exist_ok=True)
    copy_checkpoint_files(source, out)  # its run files (trainer state, metrics) stay behind
    (out / "config.json").write_text(json.dumps(restripped, indent=2) + "\n")
    record = {
        "source": str(source),
        "strip_before": strip_of(config),
        "strip_after": [strip_height, strip_width],
        "square_before": square_of(config),
        "square_after": restripped["image_size"],
    }
    (out / RESTRIP_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return out
