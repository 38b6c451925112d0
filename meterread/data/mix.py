"""One training dataset from several (`meterread mix OUT SRC...`): each source's split folder is linked under
`OUT/{split}/{source name}/` and its annotation lines are concatenated with the image paths prefixed, so nothing
is copied and every line still names its own photo. A flat source (`annotations.jsonl` at its root, as `meterread
synth` writes without --valid/--test) is all training photos."""

from __future__ import annotations

import json
import os
from pathlib import Path

from meterread.training.dataset import ANNOTATIONS, SPLITS


def prefixed_lines(text: str, prefix: str) -> list[str]:
    """Annotation lines with `prefix/` before each image path. Pure; lines that are not JSON objects pass as they
    are (the loader reports them)."""
    lines = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            lines.append(line)
            continue
        if isinstance(record, dict) and isinstance(record.get("image"), str):
            record = {**record, "image": f"{prefix}/{record['image']}", "source": prefix}
        lines.append(json.dumps(record))
    return lines


def source_splits(source: Path, splits: tuple[str, ...] = SPLITS) -> dict[str, Path]:
    """The folders one source contributes, by split: each split folder holding annotations, or the source itself as
    `train` when it holds annotations at its root instead. Raises ValueError when it has neither, or both (a flat
    `meterread synth` run into a folder an earlier run had split: which one is meant cannot be told)."""
    found = {split: source / split for split in splits if (source / split / ANNOTATIONS).is_file()}
    flat = (source / ANNOTATIONS).is_file()
    if found and flat:
        raise ValueError(f"{source} has {ANNOTATIONS} both at its root and in {sorted(found)}/: remove one")
    if flat:
        return {"train": source}
    if not found:
        raise ValueError(f"{source} has no {ANNOTATIONS}, neither at its root nor in any of {list(splits)}")
    return found


def mix_datasets(
    out_dir: str | Path, sources: list[str | Path], splits: tuple[str, ...] = SPLITS, require_train: bool = True
) -> dict[str, int]:
    """Link every source's splits under `out_dir`; returns the line count per split. Raises ValueError, before
    writing anything, when two sources share a folder name, a source holds no annotations, or (`require_train`) no
    source has a training line (a validation-only mix passes `require_train=False`)."""
    sources = [Path(source).resolve() for source in sources]
    names = [source.name for source in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"sources must have distinct folder names, got {names}")
    folders = {source: source_splits(source, splits) for source in sources}
    lines = {
        (source, split): prefixed_lines((folder / ANNOTATIONS).read_text(), source.name)
        for source, found in folders.items()
        for split, folder in found.items()
    }
    if require_train and not any(lines.get((source, "train")) for source in sources):
        raise ValueError(f"none of {[str(s) for s in sources]} has a training line (train/{ANNOTATIONS})")
    counts = {}
    for split in splits:
        split_lines = []
        for source in sources:
            if (source, split) not in lines:
                continue
            target = Path(out_dir) / split / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            os.symlink(folders[source][split], target, target_is_directory=True)
            split_lines += lines[(source, split)]
        if split_lines:
            (Path(out_dir) / split / ANNOTATIONS).write_text("\n".join(split_lines) + "\n")
            counts[split] = len(split_lines)
    return counts
