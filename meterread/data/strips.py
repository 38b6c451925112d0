"""Reading strips made of real digit crops: tight photos of a register, with known readings.

Each strip: 4-8 crops of one meter model, as counter wheels (gaps, frame, round-wheel shading, red decimal wheels,
sometimes a separator) or an LCD panel (a decimal point), in a bezel on a housing, then photographed (scale, shift,
rotation up to 6 degrees, perspective, lighting, noise, blur, JPEG). Clean digits fill the inner positions; a
half-rolled wheel may appear only in the last position and is read as the lower digit, as utilities read it.

Splits (see `crops.py`): train/valid/test from the seen models' own crop parts, `heldout` from the held-out models;
`manifest.json` lists every split's models and crops, so a leak is one set intersection away.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meterread.data.crops import HELDOUT_MODELS, DigitCrop, index_crops, inner_crops, is_lcd, select_part
from meterread.data.fonts import font_files, is_font_make, plan_makes, write_font_makes
from meterread.data.registers import (
    frame_register,
    mark_red_wheels,
    photograph,
    pick_crops,
    reading_label,
    render_register,
)
from meterread.data.synth import encode_jpeg
from meterread.models.prompts import DEFAULT_PROMPTS

STRIP_SPLITS = ("train", "valid", "test", "heldout")
FONT_MAKES_DIR = "font-makes"  # beside the splits: the rendered makes' crops (`fonts.py`)
ROLLED_LAST = 0.35  # share of counter strips whose last wheel is caught rolling (where the model has such crops)


def strip_decimals(model: str, digits: int, rng: np.random.Generator) -> int:
    """How many of a strip's digits are decimals: an LCD shows 0-1, a counter 0-3 (red wheels)."""
    choices = (0, 1) if is_lcd(model) else (0, 1, 1, 2, 3)
    return min(int(rng.choice(choices)), digits - 1)


def model_weights(grouped: dict[str, list[DigitCrop]], font_share: float | None = None) -> tuple[list[str], np.ndarray]:
    """Models with clean crops and how often to draw each: the square root of its clean crops, so one large
    model does not drown the small ones. With `font_share` (and both kinds present), font makes together get that
    share of the draws and real models the rest, each group weighted as before within itself."""
    models = sorted(m for m, crops in grouped.items() if inner_crops(crops))
    weights = np.sqrt([len(inner_crops(grouped[m])) for m in models])
    fonts = np.array([is_font_make(m) for m in models], bool)
    if font_share is not None and fonts.any() and not fonts.all():
        weights = np.where(
            fonts, font_share * weights / weights[fonts].sum(), (1 - font_share) * weights / weights[~fonts].sum()
        )
    return models, weights / weights.sum()


@dataclass(frozen=True)
class StripStyle:
    """The chances that a strip departs from its crops as they are; the defaults are every evaluation split's.
    `recolour` (a random palette), `loose` (an LCD's crops beside slices of their neighbours), `restyle` (one
    stroke weight and slant): `registers.render_register`; `rolled_last` (a counter's last wheel caught rolling):
    `registers.pick_crops`."""

    recolour: float = 0.0
    loose: float = 0.0
    rolled_last: float = ROLLED_LAST
    restyle: float = 0.0


def make_strip(
    crops: list[DigitCrop], rng: np.random.Generator, style: StripStyle = StripStyle()
) -> tuple[bytes, list[DigitCrop], str]:
    """One strip of a model's crops, drawn in `style`: JPEG bytes, the crops used (in order) and the label."""
    digits = int(rng.integers(4, 9))
    decimals = strip_decimals(crops[0].model, digits, rng)
    picks = pick_crops(crops, digits, rng, rolled_last=style.rolled_last, decimals=decimals)
    cell_h = int(rng.integers(40, 97))
    window = render_register(
        picks, decimals, rng, cell_h, recolour=style.recolour, loose=style.loose, restyle=style.restyle
    )
    image = photograph(frame_register(window, rng), rng)
    return encode_jpeg(image, rng, quality=(40, 95)), picks, reading_label(picks, decimals)


def write_strips(
    grouped: dict[str, list[DigitCrop]],
    out_dir: str | Path,
    n: int,
    seed: int,
    font_share: float | None = None,
    style: StripStyle = StripStyle(),
) -> list[dict]:
    """Write `n` strips (jpg + annotations.jsonl) drawn from `grouped` crops (`font_share`: see `model_weights`)
    in `style` (`make_strip`); returns the records. Deterministic. An earlier run's strips are the caller's to clear
    (`clear_strips`)."""
    models, weights = model_weights(grouped, font_share)
    if not models:
        raise ValueError("no meter model with clean digit crops to build strips from")
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(n):
        model = models[int(rng.choice(len(models), p=weights))]
        data, picks, label = make_strip(grouped[model], rng, style)
        name = f"{model.replace('/', '-')}-{index:06d}.jpg"
        (out / name).write_bytes(data)
        records.append(
            {
                "image": name,
                "prefix": DEFAULT_PROMPTS["paligemma"],
                "suffix": label,
                "meter_type": model.split("/")[0],
                "meter_model": model,
                "crops": [crop.name for crop in picks],
                "display": True,  # the strip is the display: a model that crops displays out of photos reads it whole
            }
        )
    (out / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def clear_strips(folder: Path) -> None:
    """Delete what `write_strips` writes in `folder` (its jpgs and annotations.jsonl; anything else stays), so a
    rerun into the same folder leaves no strip of an earlier run beside the new ones."""
    if not folder.is_dir():
        return
    for path in [*folder.glob("*.jpg"), folder / "annotations.jsonl"]:
        path.unlink(missing_ok=True)


def add_font_makes(
    out_dir: str | Path, n: int, per_make: int, seed: int, font_dirs: tuple[str, ...] | None = None
) -> tuple[dict[str, list[DigitCrop]], list]:
    """Render `n` font makes (`fonts.py`) of `per_make` crops into `out_dir/FONT_MAKES_DIR` (emptied first, so a
    rerun never mixes in an earlier run's makes); returns their crops by model and what each make is drawn with
    (for the manifest: the glyph source, and a font file's sha256, since makes depend on the machine's fonts).
    `font_dirs`: the only folders to take TrueType fonts from (default: the machine's font folders), so makes can
    be reproduced on another machine from the same font files."""
    fonts = font_files(font_dirs, required=True) if font_dirs is not None else font_files()
    makes = plan_makes(n, fonts, seed)
    folder = Path(out_dir) / FONT_MAKES_DIR
    if folder.exists():
        shutil.rmtree(folder)
    write_font_makes(folder, makes, per_make, seed)
    return index_crops(folder), [_drawn_with(make.name, make.glyphs) for make in makes]


def _drawn_with(model: str, glyphs: str) -> dict[str, str]:
    if not Path(glyphs).is_file():  # Pillow's bundled font, a Hershey font, seven segments
        return {"model": model, "glyphs": glyphs}
    digest = hashlib.sha256(Path(glyphs).read_bytes()).hexdigest()
    return {"model": model, "glyphs": Path(glyphs).name, "font_path": glyphs, "font_sha256": digest}


def write_strip_dataset(
    root: str | Path,
    out_dir: str | Path,
    sizes: dict[str, int],
    seed: int,
    holdout: tuple[str, ...] = HELDOUT_MODELS,
    font_makes: int = 0,
    font_crops: int = 500,
    font_share: float | None = None,
    font_dirs: tuple[str, ...] | None = None,
    recolour: float = 0.0,
    loose: float = 0.0,
    rolled_last: float | None = None,
    restyle: float = 0.0,
) -> dict[str, int]:
    """Strips per split (`train`, `valid`, `test`: seen models, disjoint crops; `heldout`: held-out models only),
    plus `manifest.json` (models and crops of every split). With `font_makes`, that many rendered makes of
    `font_crops` crops each join the training models (train only: every evaluation split stays real), drawn for
    `font_share` of the training strips (default: by their crops, like every model), TrueType fonts taken from
    `font_dirs` (default: the machine's font folders). `recolour`: the share of training strips painted in a
    random palette (`registers.recolour_cells`; train only, like font makes); `loose`: the share of training LCD
    strips whose crops show slices of their neighbours (`registers.loosen_cells`; train only); `rolled_last`: the
    share of training counter strips whose last wheel is caught rolling (None: ROLLED_LAST, as every other split);
    `restyle`: the share of training strips redrawn in one stroke weight and slant (`registers.restyle_cells`; train
    only). Returns the counts written. Raises ValueError on an unknown split or held-out model, or bad font-make,
    recolour, loose, rolled-last or restyle settings (before anything is rendered)."""
    unknown = [split for split in sizes if split not in STRIP_SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; expected some of {STRIP_SPLITS}")
    if font_makes < 0 or (font_makes and font_crops < 1):
        raise ValueError(f"font makes need counts >= 1 (got {font_makes} makes of {font_crops} crops)")
    if font_share is not None and not (font_makes and 0 < font_share < 1):
        raise ValueError(f"font share must be between 0 and 1 (exclusive) and needs font makes (got {font_share})")
    if font_dirs is not None and not font_makes:
        raise ValueError(f"font folders {list(font_dirs)} are only read for font makes (give --font-makes N)")
    if font_makes and not sizes.get("train"):
        raise ValueError("font makes only join training strips: ask for some (train > 0)")
    asked = (("recolour", recolour), ("loose", loose), ("restyle", restyle))
    shares = {name: share for name, share in asked if share}  # asked for
    if rolled_last is not None:  # 0 too: no rolling wheel is a choice against the default
        shares["rolled_last"] = rolled_last
    training = StripStyle(**shares)  # every share not asked for keeps the evaluation splits' default
    for name, share in shares.items():
        if not 0 <= share <= 1:
            raise ValueError(f"{name} is a share of training strips, 0 to 1 (got {share})")
        if not sizes.get("train"):
            raise ValueError(f"{name} changes training strips only: ask for some (train > 0)")
    grouped = mark_red_wheels(index_crops(root))
    select_part(grouped, "train", holdout)  # an unknown held-out model fails here, not after the rendering
    manifest: dict = {"holdout": list(holdout), "splits": {}}
    manifest |= shares
    extra: dict[str, list[DigitCrop]] = {}
    if font_makes:
        extra, manifest["font_makes"] = add_font_makes(out_dir, font_makes, font_crops, seed, font_dirs)
        manifest["font_share"] = font_share
    Path(out_dir, "manifest.json").unlink(missing_ok=True)  # written last: a crash leaves no manifest, not a stale one
    for split in STRIP_SPLITS:  # a split this run does not write must not survive from an earlier run
        clear_strips(Path(out_dir) / split)
    counts = {}
    for offset, (split, n) in enumerate(sizes.items()):
        if not n:
            continue
        train = split == "train"
        part = select_part(grouped, split, holdout) | (extra if train else {})
        share, style = (font_share, training) if train else (None, StripStyle())
        records = write_strips(part, Path(out_dir) / split, n, seed * 10 + offset, share, style)
        counts[split] = len(records)
        manifest["splits"][split] = {
            "models": sorted({r["meter_model"] for r in records}),
            "crops": sorted({name for r in records for name in r["crops"]}),
        }
    Path(out_dir, "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return counts
