"""Tiny random-weight models, built by each family's `build_tiny` from config with a tokenizer built locally and
saved with `save_pretrained`.

They exercise exactly the loading path of real checkpoints (`from_pretrained` on a directory) without hub
access. Random weights read nothing; `meterread train` turns them into the demo model. Imports without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TinySize:
    """Architecture knobs of a tiny model."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 64
    vision_layers: int = 2
    text_hidden: int = 64
    text_layers: int = 2
    heads: int = 4


def build_tiny(family: str, out_dir: str | Path, size: TinySize = TinySize(), seed: int = 0) -> Path:
    """A tiny random-weight model of `family`, through the family registry. Raises ValueError for an unknown one."""
    from meterread.models.registry import family_module

    return family_module(family).build_tiny(out_dir, size, seed)
