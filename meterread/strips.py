"""Multi-digit reading strips composed from real digit crops, with known readings.

Source layout (see `../shared/data/meter-digits/NOTICE`): `<root>/<meter type>/<model>/<label>_<anything>.jpg` where
the label is `D` (clean digit) or `X.Y` (a counter wheel Y tenths of the way from X to X+1; `X.0` is clean).
Clean digits fill the inner positions; a half-rolled wheel may appear only in the last position and is read as the
lower digit X, as utilities read it. Strips are grouped by meter model, so a split can hold out whole models.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

_LABEL = re.compile(r"^(?P<digit>\d)(?:\.(?P<tenths>\d))?_")
STRIP_HEIGHT = 64
STRIP_PROMPT = "extract meter value from this image"


@dataclass(frozen=True)
class DigitCrop:
    path: Path
    model: str  # "<meter type>/<model>"
    digit: int
    tenths: int  # 0 = clean


def parse_crop_name(name: str) -> tuple[int, int] | None:
    """`4.7_abc.jpg` -> (4, 7); `3_x.jpg` -> (3, 0); anything else -> None."""
    match = _LABEL.match(name)
    if not match:
        return None
    return int(match.group("digit")), int(match.group("tenths") or 0)


def index_crops(root: str | Path) -> dict[str, list[DigitCrop]]:
    """All labelled crops under `root`, grouped by meter model."""
    root = Path(root)
    grouped: dict[str, list[DigitCrop]] = defaultdict(list)
    for path in sorted(root.glob("*/*/*.jpg")):
        parsed = parse_crop_name(path.name)
        if parsed:
            model = f"{path.parent.parent.name}/{path.parent.name}"
            grouped[model].append(DigitCrop(path, model, *parsed))
    return dict(grouped)


def compose_strip(crops: list[DigitCrop], height: int = STRIP_HEIGHT) -> np.ndarray:
    """Crops side by side at a common height (BGR)."""
    images = []
    for crop in crops:
        image = cv2.imread(str(crop.path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"unreadable crop {crop.path}")
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        images.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
    return np.hstack(images)


def strip_label(crops: list[DigitCrop]) -> str:
    """The reading a strip shows: every digit's lower value (a rolled last wheel reads as its lower digit)."""
    return "".join(str(crop.digit) for crop in crops)


def sample_strip(
    crops: list[DigitCrop], digits: int, rng: np.random.Generator, rolled_last: float = 0.3
) -> list[DigitCrop]:
    """Pick `digits` crops of one model: clean ones inside, a rolled wheel last with probability `rolled_last`."""
    clean = [c for c in crops if c.tenths == 0]
    rolled = [c for c in crops if c.tenths > 0]
    if not clean:
        raise ValueError(f"model {crops[0].model} has no clean digits")
    picks = [clean[int(rng.integers(len(clean)))] for _ in range(digits)]
    if rolled and rng.random() < rolled_last:
        picks[-1] = rolled[int(rng.integers(len(rolled)))]
    return picks


def write_strips(
    root: str | Path, out_dir: str | Path, n: int, digits: int, seed: int, models: list[str] | None = None
) -> list[dict]:
    """Write `n` strips (jpg + annotations.jsonl) drawn from `models` (default: all); returns the records."""
    grouped = index_crops(root)
    chosen = models or sorted(grouped)
    missing = [m for m in chosen if m not in grouped]
    if missing:
        raise ValueError(f"unknown meter model(s) {missing}; found {sorted(grouped)}")
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(n):
        model = chosen[int(rng.integers(len(chosen)))]
        picks = sample_strip(grouped[model], digits, rng)
        name = f"{model.replace('/', '-')}-{index:06d}.jpg"
        cv2.imwrite(str(out / name), compose_strip(picks))
        records.append(
            {
                "image": name,
                "prefix": STRIP_PROMPT,
                "suffix": strip_label(picks),
                "meter_type": model.split("/")[0],
                "meter_model": model,
                "crops": [crop.path.name for crop in picks],
            }
        )
    (out / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def write_strip_dataset(
    root: str | Path, out_dir: str | Path, sizes: dict[str, int], digits: int, seed: int, holdout: list[str]
) -> dict[str, int]:
    """train/valid from the non-held-out models, test from the held-out models (whole models unseen in training)."""
    models = sorted(index_crops(root))
    unknown = [m for m in holdout if m not in models]
    if unknown:
        raise ValueError(f"unknown held-out model(s) {unknown}; found {models}")
    seen = [m for m in models if m not in holdout]
    plan = {"train": seen, "valid": seen, "test": holdout or seen}
    return {
        split: len(write_strips(root, Path(out_dir) / split, n, digits, seed * 10 + i, plan[split]))
        for i, (split, n) in enumerate(sizes.items())
        if n
    }
