"""Real digit crops, their labels, and the leave-models-out split. Pure apart from `index_crops` (a directory listing).

Source layout (see `../shared/data/meter-digits/NOTICE`): `<root>/<meter type>/<model>/<label>_<anything>.jpg`, the
label `D` (a clean digit) or `X.Y` (a counter wheel Y tenths of the way from X to X+1; `X.0` is clean).

Split: whole meter models in `HELDOUT_MODELS` are never used for training (part `heldout`); every other model's
crops are split by a hash of their path into `train` (80%), `valid` (10%) and `test` (10%), so the seen-model test
set has crops no training strip or photo contains.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

_LABEL = re.compile(r"^(?P<digit>\d)(?:\.(?P<tenths>\d))?_")
# One electricity counter, one water counter, one LCD: three makes the model never sees in training.
HELDOUT_MODELS = ("lcd/lcd2", "powermeter/betar", "watermeter/pp")
PARTS = ("train", "valid", "test", "heldout")
MAX_ROLL_TENTHS = 5  # a last wheel "half-rolled": at most half-way to the next digit, read as the lower digit
NEAR_CLEAN_TENTHS = 1  # a wheel 0.1 of the way on still shows its digit whole: usable at an inner position


@dataclass(frozen=True)
class DigitCrop:
    path: Path
    model: str  # "<meter type>/<model>"
    digit: int
    tenths: int  # 0 = clean
    red: bool = False  # a red wheel or red ink (`registers.mark_red_wheels`): a decimal wheel on a real counter

    @property
    def name(self) -> str:
        return f"{self.model}/{self.path.name}"


def parse_crop_name(name: str) -> tuple[int, int] | None:
    """`4.7_abc.jpg` -> (4, 7); `3_x.jpg` -> (3, 0); anything else -> None."""
    match = _LABEL.match(name)
    if not match:
        return None
    return int(match.group("digit")), int(match.group("tenths") or 0)


def index_crops(root: str | Path) -> dict[str, list[DigitCrop]]:
    """All labelled crops under `root`, grouped by meter model. Raises FileNotFoundError when there are none."""
    root = Path(root)
    grouped: dict[str, list[DigitCrop]] = defaultdict(list)
    for path in sorted(root.glob("*/*/*.jpg")):
        parsed = parse_crop_name(path.name)
        if parsed:
            model = f"{path.parent.parent.name}/{path.parent.name}"
            grouped[model].append(DigitCrop(path, model, *parsed))
    if not grouped:
        raise FileNotFoundError(f"no labelled digit crops under {root} (expected <type>/<model>/<label>_*.jpg)")
    return dict(grouped)


def crop_part(crop: DigitCrop, holdout: tuple[str, ...] = HELDOUT_MODELS) -> str:
    """Which part a crop belongs to: `heldout` for a held-out model, else train/valid/test by a hash of its name."""
    if crop.model in holdout:
        return "heldout"
    bucket = int(hashlib.sha256(crop.name.encode()).hexdigest()[:8], 16) % 10
    return "valid" if bucket == 0 else "test" if bucket == 1 else "train"


def select_part(
    grouped: dict[str, list[DigitCrop]], part: str, holdout: tuple[str, ...] = HELDOUT_MODELS
) -> dict[str, list[DigitCrop]]:
    """The crops of one part, grouped by model (models with none left out). Raises ValueError on a bad part or
    an unknown held-out model."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; expected one of {PARTS}")
    unknown = [model for model in holdout if model not in grouped]
    if unknown:
        raise ValueError(f"unknown held-out model(s) {unknown}; found {sorted(grouped)}")
    chosen = {model: [c for c in crops if crop_part(c, holdout) == part] for model, crops in grouped.items()}
    return {model: crops for model, crops in chosen.items() if crops}


def is_lcd(model: str) -> bool:
    return "lcd" in model.split("/")[-1] or model.startswith("lcd/")


def inner_crops(crops: list[DigitCrop]) -> list[DigitCrop]:
    """Crops fit for an inner position: clean, or so barely rolled that the digit shows whole."""
    return [c for c in crops if c.tenths <= NEAR_CLEAN_TENTHS]


def rolled_crops(crops: list[DigitCrop]) -> list[DigitCrop]:
    """Last-wheel crops caught rolling, at most half-way (labelled as their lower digit)."""
    return [c for c in crops if 0 < c.tenths <= MAX_ROLL_TENTHS]
