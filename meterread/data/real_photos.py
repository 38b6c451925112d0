"""Synthetic meter photos whose register is built from real digit crops (`meterread synth --digits DIR`).

The photo around the register is drawn: a rectangular housing, or for water meters often a round face with red
pointer dials around the register; tilt up to `max_tilt` degrees, perspective, glare on the glass, a shadow, uneven
light, noise and blur. The display crop and resize then see real digit pixels, as on a utility's photos.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import cv2
import numpy as np

from meterread.data.crops import HELDOUT_MODELS, DigitCrop, index_crops, inner_crops, is_lcd, select_part
from meterread.data.registers import mark_red_wheels, pick_crops, render_register

_KIND_OF_TYPE = {
    "electricity-lcd": "lcd",
    "electricity-mechanical": "powermeter",
    "gas-mechanical": "gasmeter",
    "water-mechanical": "watermeter",
}


def crop_kind(model: str) -> str:
    """'lcd' for LCD models, else the model's meter type folder (powermeter, gasmeter, watermeter)."""
    return "lcd" if is_lcd(model) else model.split("/")[0]


@lru_cache(maxsize=8)
def _usable_models(root: str, part: str, holdout: tuple[str, ...]) -> dict[str, list[DigitCrop]]:
    """Models of the part that have clean crops to build a register from."""
    grouped = mark_red_wheels(select_part(index_crops(root), part, holdout))
    return {model: crops for model, crops in grouped.items() if inner_crops(crops)}


def fit_label(label: str, available: set[int], rng: np.random.Generator) -> str:
    """`label` with every digit the model has no clean crop of replaced by a random one it has (a small part of a
    model's crops may miss a digit or two). Pure."""
    choices = sorted(available)
    return "".join(
        c if not c.isdigit() or int(c) in available else str(choices[int(rng.integers(len(choices)))]) for c in label
    )


def models_for(meter_type: str, usable: dict[str, list[DigitCrop]]) -> list[str]:
    """Usable models of a meter type's kind; a counter type with none falls back to any counter model."""
    kind = _KIND_OF_TYPE[meter_type]
    exact = sorted(m for m in usable if crop_kind(m) == kind)
    if exact:
        return exact
    same_family = sorted(m for m in usable if (crop_kind(m) == "lcd") == (kind == "lcd"))
    if not same_family:
        raise ValueError(f"no digit crops usable for a {meter_type} register in this part")
    return same_family


@dataclass(frozen=True)
class DigitSource:
    """Where a photo's digits come from: a crop folder, its part (train/valid/test/heldout) and held-out models;
    `recolour`: the share of registers painted in a random palette (`registers.recolour_cells`); training photos
    only: refused for another part, and `write_dataset` sets it to 0 for every split but train."""

    root: str
    part: str = "train"
    holdout: tuple[str, ...] = HELDOUT_MODELS
    max_tilt: float = 25.0
    recolour: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.recolour <= 1:
            raise ValueError(f"recolour is a share of registers, 0 to 1 (got {self.recolour})")
        if self.recolour and self.part not in ("auto", "train"):
            raise ValueError(f"recolouring is for training photos only, not the {self.part} part")

    def for_split(self, split: str) -> DigitSource:
        """The source of one dataset split: an "auto" part becomes the split's own; only train keeps `recolour`."""
        part = split if self.part == "auto" else self.part
        return replace(self, part=part, recolour=self.recolour if split == "train" else 0.0)

    def render(
        self, label: str, meter_type: str, rolled: bool, rng: np.random.Generator, size
    ) -> tuple[np.ndarray, str, str, np.ndarray]:
        """A photo (BGR) of a meter whose register shows `label` in real crops of one model of the part; the label
        it really shows (digits the model's crops lack are swapped for ones it has: see `fit_label`), the model and
        the register window's corners in the photo (4x2)."""
        usable = _usable_models(self.root, self.part, self.holdout)
        candidates = models_for(meter_type, usable)
        model = candidates[int(rng.integers(len(candidates)))]
        label = fit_label(label, {c.digit for c in inner_crops(usable[model])}, rng)
        decimals = len(label.split(".")[1]) if "." in label else 0
        digits = [int(c) for c in label if c.isdigit()]
        picks = pick_crops(usable[model], digits, rng, rolled_last=1.0 if rolled else 0.0, decimals=decimals)
        window = render_register(picks, decimals, rng, cell_h=int(rng.integers(48, 97)), recolour=self.recolour)
        photo, corners = compose_real_photo(window, meter_type, rng, size, self.max_tilt)
        return photo, label, model, corners


def _draw_pointer_dials(photo: np.ndarray, centre, radius: float, rng: np.random.Generator) -> None:
    """Small round dials with red needles below a water meter's register, in place."""
    count = int(rng.integers(3, 5))
    for index in range(count):
        angle = np.pi * (0.15 + 0.7 * (index + 0.5) / count)
        x = int(centre[0] - np.cos(angle) * radius * 0.55)
        y = int(centre[1] + np.sin(angle) * radius * 0.5)
        r = max(3, int(radius * 0.12))
        cv2.circle(photo, (x, y), r, (235, 235, 235), -1, cv2.LINE_AA)
        cv2.circle(photo, (x, y), r, (40, 40, 40), max(1, r // 10), cv2.LINE_AA)
        for tick in range(10):
            t = 2 * np.pi * tick / 10
            inner, outer = (x + np.cos(t) * r * 0.75, y + np.sin(t) * r * 0.75), (x + np.cos(t) * r, y + np.sin(t) * r)
            cv2.line(photo, tuple(int(v) for v in inner), tuple(int(v) for v in outer), (30, 30, 30), 1, cv2.LINE_AA)
        t = rng.uniform(0, 2 * np.pi)
        tip = (int(x + np.cos(t) * r * 0.85), int(y + np.sin(t) * r * 0.85))
        cv2.line(photo, (x, y), tip, (30, 30, 200), max(1, r // 6), cv2.LINE_AA)


def _add_shadow(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft-edged shadow over one side of the photo (a hand, a cabinet door)."""
    height, width = photo.shape[:2]
    angle = rng.uniform(0, 2 * np.pi)
    xs, ys = np.meshgrid(np.linspace(-1, 1, width, dtype=np.float32), np.linspace(-1, 1, height, dtype=np.float32))
    side = xs * np.cos(angle) + ys * np.sin(angle) - rng.uniform(-0.2, 0.6)
    mask = 1.0 / (1.0 + np.exp(-side / rng.uniform(0.03, 0.15)))
    darkness = rng.uniform(0.25, 0.55)
    return (photo.astype(np.float32) * (1 - darkness * mask[..., None])).astype(np.uint8)


def compose_real_photo(
    register: np.ndarray, meter_type: str, rng: np.random.Generator, size: tuple[int, int], max_tilt: float = 25.0
) -> tuple[np.ndarray, np.ndarray]:
    """Place a register window on a housing (or a round water-meter face) and photograph it (BGR, `size` = (w, h)).
    Returns the photo and the register window's corners in it (4x2)."""
    from meterread.data.synth import add_glare, light_noise_blur, tilt_camera

    width, height = size
    photo = np.empty((height, width, 3), np.uint8)
    photo[:] = tuple(int(v) for v in rng.integers(30, 200, 3))
    round_face = meter_type == "water-mechanical" and rng.random() < 0.6
    if round_face:
        radius = min(width, height) * rng.uniform(0.36, 0.46)
        centre = (width / 2 + rng.uniform(-0.05, 0.05) * width, height / 2)
        cv2.circle(photo, (int(centre[0]), int(centre[1])), int(radius * 1.12), (60, 60, 60), -1, cv2.LINE_AA)
        face = tuple(int(v) for v in rng.integers(215, 250, 3))
        cv2.circle(photo, (int(centre[0]), int(centre[1])), int(radius), face, -1, cv2.LINE_AA)
        target_w = int(radius * rng.uniform(1.0, 1.3))
    else:
        housing = tuple(int(v) for v in rng.integers(40, 230, 3))
        mx, my = int(width * rng.uniform(0.04, 0.14)), int(height * rng.uniform(0.04, 0.14))
        cv2.rectangle(photo, (mx, my), (width - mx, height - my), housing, -1)
        target_w = int(width * rng.uniform(0.4, 0.65))
    window = cv2.resize(
        register,
        (target_w, max(4, int(register.shape[0] * target_w / register.shape[1]))),
        interpolation=cv2.INTER_AREA,
    )
    wh, ww = window.shape[:2]
    if round_face:
        px, py = int(centre[0] - ww / 2), int(centre[1] - radius * rng.uniform(0.45, 0.6))
        _draw_pointer_dials(photo, centre, radius, rng)
    else:
        px = int((width - ww) * rng.uniform(0.3, 0.7))
        py = int((height - wh) * rng.uniform(0.25, 0.55))
    photo[py : py + wh, px : px + ww] = window
    frame = max(2, ww // 120)
    bezel = int(rng.integers(20, 80)) if window.mean() > 110 else int(rng.integers(150, 230))
    cv2.rectangle(photo, (px - frame, py - frame), (px + ww + frame, py + wh + frame), (bezel,) * 3, frame)
    # camera: tilt + perspective, glare, shadow, uneven light, noise, blur
    photo, corners = tilt_camera(photo, (px, py, ww, wh), rng, max_angle=max_tilt, jitter=0.06, scale=(0.85, 1.0))
    if rng.random() < 0.5:
        photo = add_glare(photo, rng)
    if rng.random() < 0.4:
        photo = _add_shadow(photo, rng)
    return light_noise_blur(photo, rng), corners
