"""Register windows built from real digit crops, and the camera effects a strip goes through. Pure (arrays in and
out; crops are read by the caller's `load`).

Counters: one wheel per crop at a common height, dark or light gaps between wheels, round-wheel shading, a slight
vertical misalignment, decimal wheels tinted red (white on red or red on white) and sometimes a separator mark.
LCDs: the crops abut on one panel colour and a decimal point is drawn in the ink colour.
Recolouring (training only): a register's crops repainted in one random ink/paper palette, either polarity, contrast
down to faint, so a make's colour scheme is not what the reader learns to expect.
Loosening (training only, LCDs): each crop beside slices of its neighbours, as a make cropped loosely shows its
digits (`lcd/lcd2`: a digit beside part of the next), so a cut-off segment at a cell's edge is not read as a digit.
Restyling (training only): a register's crops redrawn in one stroke weight and slant, as another make might print the
same digits, so fifteen makes' typefaces stand for more than fifteen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from meterread.data.crops import DigitCrop, inner_crops, is_lcd, rolled_crops


def load_crop(crop: DigitCrop) -> np.ndarray:
    image = cv2.imread(str(crop.path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"unreadable crop {crop.path}")
    return image


MIN_RED_SHARE = 0.2  # of a crop's pixels saturated red: a red wheel (white digit on red)
MIN_RED_INK_SHARE = 0.4  # of its ink (pixels far from its median grey) saturated red: a red digit on white


def is_red_wheel(image: np.ndarray) -> bool:
    """Whether a crop (BGR) shows a red wheel or a red digit, as a counter's decimal wheels do (measured on the
    crop set: `watermeter/jvi` 74% of crops, `analysiscenter` 29%, `watermeter/unknown` 10%, black-on-white and
    LCD models 0-3%)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.int16)
    hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]  # OpenCV: hue 0-179, red wraps around 0
    red = ((hue < 10) | (hue > 165)) & (saturation > 80) & (value > 50)  # saturated, not dark: orange is hue 10-25
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.int16)
    ink = np.abs(gray - np.median(gray)) > 35
    return bool(red.mean() > MIN_RED_SHARE or (red & ink).sum() > MIN_RED_INK_SHARE * max(int(ink.sum()), 1))


def mark_red_wheels(grouped: dict[str, list[DigitCrop]]) -> dict[str, list[DigitCrop]]:
    """The crops with `red` set from their pixels (`is_red_wheel`; reads every crop once)."""
    return {
        model: [replace(crop, red=is_red_wheel(load_crop(crop))) for crop in crops] for model, crops in grouped.items()
    }


def reading_label(picks: Sequence[DigitCrop], decimals: int) -> str:
    """The reading a register of `picks` shows: each wheel's lower digit, the last `decimals` after a point."""
    digits = "".join(str(crop.digit) for crop in picks)
    return f"{digits[:-decimals]}.{digits[-decimals:]}" if decimals else digits


def pick_crops(
    crops: list[DigitCrop],
    digits: Sequence[int] | int,
    rng: np.random.Generator,
    rolled_last: float,
    decimals: int = 0,
) -> list[DigitCrop]:
    """Crops of one model for a register: the given digits (or `digits` random ones from what the model has) at
    inner positions from clean crops; the last wheel half-rolled with probability `rolled_last` where it can be.
    The first `len - decimals` (integer) positions take no red crop (`DigitCrop.red`) where the model has another
    of that digit: on a real counter red wheels are the decimals. Raises ValueError when the model has no crop for
    a wanted digit."""
    inner = inner_crops(crops)
    if not inner:
        raise ValueError(f"model {crops[0].model} has no clean digits")
    count = digits if isinstance(digits, int) else len(digits)
    if not 0 <= decimals <= count:
        raise ValueError(f"{decimals} decimals for a register of {count} digits")
    integer = [c for c in inner if not c.red] or inner
    integral = [index < count - decimals for index in range(count)]  # which positions are before the point
    if isinstance(digits, int):
        pools = [integer if before_point else inner for before_point in integral]
        picks = [pool[int(rng.integers(len(pool)))] for pool in pools]
    else:
        by_digit, integer_by_digit = _by_digit(inner), _by_digit(integer)
        missing = sorted({d for d in digits if d not in by_digit})
        if missing:
            raise ValueError(f"model {crops[0].model} has no clean crop of digit(s) {missing}")
        options = [
            (before_point and integer_by_digit.get(d)) or by_digit[d] for before_point, d in zip(integral, digits)
        ]
        picks = [choices[int(rng.integers(len(choices)))] for choices in options]
    rolled = [c for c in rolled_crops(crops) if isinstance(digits, int) or c.digit == picks[-1].digit]
    if not decimals:
        rolled = [c for c in rolled if not c.red]
    if rolled and rng.random() < rolled_last:
        picks[-1] = rolled[int(rng.integers(len(rolled)))]
    return picks


def _by_digit(crops: list[DigitCrop]) -> dict[int, list[DigitCrop]]:
    grouped: dict[int, list[DigitCrop]] = {}
    for crop in crops:
        grouped.setdefault(crop.digit, []).append(crop)
    return grouped


def _border_colour(image: np.ndarray) -> np.ndarray:
    edge = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return np.median(edge, axis=0)


def _tint_red(cell: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A decimal wheel: the crop's ink and paper remapped to white on red or red on white (BGR)."""
    gray = cv2.cvtColor(cell, cv2.COLOR_BGR2GRAY).astype(np.float32)
    lo, hi = np.percentile(gray, 3), np.percentile(gray, 97)
    level = np.clip((gray - lo) / max(hi - lo, 1.0), 0, 1)[..., None]  # 0 = darkest, 1 = lightest
    red = np.float32([rng.uniform(20, 60), rng.uniform(20, 60), rng.uniform(150, 210)])
    white = np.float32([rng.uniform(200, 245)] * 3)
    return (red * (1 - level) + white * level).astype(np.uint8)  # dark ink turns red, light ink white


MIN_PALETTE_CONTRAST = 50.0  # grey levels between a recoloured register's ink and paper (about pp's wheels)
_LUMA_BGR = np.float32([0.114, 0.587, 0.299])


def random_palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two BGR colours, `shadow` (for a crop's darkest grey) and `highlight` (its lightest), at least
    `MIN_PALETTE_CONTRAST` grey levels apart; either may be the darker, so both polarities come out."""
    while True:
        shadow, highlight = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        if abs(float((shadow - highlight) @ _LUMA_BGR)) >= MIN_PALETTE_CONTRAST:
            return shadow, highlight


def recolour_cells(images: Sequence[np.ndarray], shadow: np.ndarray, highlight: np.ndarray) -> list[np.ndarray]:
    """Every crop repainted in one palette: its grey levels stretched (3rd-97th percentile) and mapped from
    `shadow` (its darkest) to `highlight` (its lightest)."""
    painted = []
    for image in images:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        lo, hi = np.percentile(gray, 3), np.percentile(gray, 97)
        level = np.clip((gray - lo) / max(hi - lo, 1.0), 0, 1)[..., None]
        painted.append((shadow * (1 - level) + highlight * level).astype(np.uint8))
    return painted


def _wheel_shading(cell: np.ndarray, depth: float) -> np.ndarray:
    height = cell.shape[0]
    rows = np.linspace(-1.0, 1.0, height, dtype=np.float32)
    profile = (1.0 - depth * rows**2)[:, None, None]
    return (cell.astype(np.float32) * profile).clip(0, 255).astype(np.uint8)


def render_counter(images: Sequence[np.ndarray], decimals: int, rng: np.random.Generator, cell_h: int) -> np.ndarray:
    """A counter window (BGR) of wheels."""
    frame = np.float32([rng.uniform(5, 60)] * 3) if rng.random() < 0.75 else np.float32([rng.uniform(150, 220)] * 3)
    gap = max(1, int(cell_h * rng.uniform(0.04, 0.25)))
    jitter = max(1, int(cell_h * 0.04))
    red_decimals = decimals and rng.random() < 0.8
    depth = rng.uniform(0.0, 0.35)
    width = int(rng.uniform(0.5, 0.75) * cell_h)  # one width for every wheel of a register
    pad = jitter + max(1, int(cell_h * rng.uniform(0.04, 0.12)))
    window = np.empty((cell_h + 2 * pad, gap + len(images) * (width + gap), 3), np.float32)
    window[:] = frame
    for index, image in enumerate(images):
        cell = cv2.resize(image, (width, cell_h), interpolation=cv2.INTER_AREA)
        if red_decimals and index >= len(images) - decimals:
            cell = _tint_red(cell, rng)
        cell = _wheel_shading(cell, depth)
        top = pad + int(rng.integers(-jitter, jitter + 1))
        left = gap + index * (width + gap)
        window[top : top + cell_h, left : left + width] = cell
    if decimals and (not red_decimals or rng.random() < 0.3):  # without red wheels a mark shows where decimals start
        x = gap + (len(images) - decimals) * (width + gap) - gap // 2 - 1
        ink = (235, 235, 235) if frame[0] < 100 else (20, 20, 20)
        cv2.circle(window, (x, pad + int(cell_h * 0.9)), max(1, gap // 2 + 1), ink, -1, cv2.LINE_AA)
    return window.astype(np.uint8)


def at_height(image: np.ndarray, height: int) -> np.ndarray:
    """`image` scaled to `height`, its aspect kept (at least 2 px wide)."""
    return cv2.resize(image, (max(2, int(image.shape[1] * height / image.shape[0])), height))


def render_lcd(
    images: Sequence[np.ndarray], decimals: int, rng: np.random.Generator, cell_h: int, ink: np.ndarray | None = None
) -> np.ndarray:
    """An LCD panel (BGR) of abutting digit crops, a decimal point drawn in the ink colour (default: the crops'
    darkest, as every LCD make's crops show dark segments on a light panel)."""
    panel = np.mean([_border_colour(image) for image in images], axis=0).astype(np.float32)
    cells = [at_height(image, cell_h) for image in images]
    pad = max(1, int(cell_h * rng.uniform(0.05, 0.2)))
    width = sum(c.shape[1] for c in cells) + 2 * pad
    window = np.empty((cell_h + 2 * pad, width, 3), np.float32)
    window[:] = panel
    x = pad
    ink = np.min([c.reshape(-1, 3).min(axis=0) for c in cells], axis=0) if ink is None else ink
    for index, cell in enumerate(cells):
        window[pad : pad + cell_h, x : x + cell.shape[1]] = cell
        x += cell.shape[1]
        if decimals and index == len(cells) - decimals - 1:
            radius = max(1, cell_h // 18)
            cv2.circle(window, (x - radius, pad + cell_h - 2 * radius), radius, ink.tolist(), -1, cv2.LINE_AA)
    return window.astype(np.uint8)


LOOSE_SIDE = 0.6  # chance that a loosened cell shows a slice of its neighbour on each side
LOOSE_SLICE = (0.08, 0.35)  # the slice's share of the neighbour's width


def loosen_cells(images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Each crop (BGR) at the first one's height, widened by a slice of its left neighbour's right edge and of its
    right neighbour's left edge, each with chance LOOSE_SIDE and a LOOSE_SLICE share of its width (the register
    wraps round: the first crop's left neighbour is the last)."""
    height = images[0].shape[0]
    cells = [at_height(image, height) for image in images]
    loose = []
    for index, cell in enumerate(cells):
        left, right = cells[index - 1], cells[(index + 1) % len(cells)]
        parts = [cell]
        if rng.random() < LOOSE_SIDE:
            parts.insert(0, left[:, -max(1, int(left.shape[1] * rng.uniform(*LOOSE_SLICE))) :])
        if rng.random() < LOOSE_SIDE:
            parts.append(right[:, : max(1, int(right.shape[1] * rng.uniform(*LOOSE_SLICE)))])
        loose.append(np.hstack(parts))
    return loose


RESTYLE_STROKE = (0.01, 0.03)  # the stroke change's radius, a share of the crop's height (at least 1 px)
RESTYLE_SLANT = 0.2  # the most a strip's digits lean: columns shifted by this share of the height, top against bottom


def restyle_cells(images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Each crop (BGR) of one register in one drawn style: its dark strokes thickened or thinned (a min or a max
    filter, elliptical, radius a RESTYLE_STROKE share of the crop's height, so light digits change the other way)
    and slanted by one shear of up to RESTYLE_SLANT about the crop's middle row; every crop keeps its size."""
    share, darken = rng.uniform(*RESTYLE_STROKE), rng.random() < 0.5
    slant = rng.uniform(-RESTYLE_SLANT, RESTYLE_SLANT)
    styled = []
    for image in images:
        height, width = image.shape[:2]
        radius = max(1, round(height * share))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        image = cv2.erode(image, kernel) if darken else cv2.dilate(image, kernel)
        shear = np.float32([[1, -slant, slant * height / 2], [0, 1, 0]])  # top row right for slant > 0
        styled.append(cv2.warpAffine(image, shear, (width, height), borderMode=cv2.BORDER_REPLICATE))
    return styled


def render_register(
    picks: Sequence[DigitCrop],
    decimals: int,
    rng: np.random.Generator,
    cell_h: int,
    recolour: float = 0.0,
    loose: float = 0.0,
    restyle: float = 0.0,
) -> np.ndarray:
    """The register window (BGR) for `picks`: an LCD panel for LCD crops, else counter wheels; with probability
    `restyle` in one drawn stroke weight and slant (`restyle_cells`), with probability `recolour` in a random
    palette (`recolour_cells`), an LCD's crops with probability `loose` loosened (`loosen_cells`). At 0 none of
    them draws a random number, so the streams of sets made without them stay as they were."""
    images, ink = [load_crop(crop) for crop in picks], None
    if restyle and rng.random() < restyle:
        images = restyle_cells(images, rng)
    if recolour and rng.random() < recolour:
        shadow, highlight = random_palette(rng)
        images, ink = recolour_cells(images, shadow, highlight), shadow  # an LCD's dark segments took the shadow
    if is_lcd(picks[0].model):
        if loose and rng.random() < loose:
            images = loosen_cells(images, rng)
        return render_lcd(images, decimals, rng, cell_h, ink)
    return render_counter(images, decimals, rng, cell_h)


def frame_register(window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The window in a bezel on a housing, with margins all round (what a tight photo of a register shows)."""
    height = window.shape[0]
    bezel = int(rng.integers(20, 80)) if window.mean() > 110 else int(rng.integers(150, 230))
    housing = tuple(int(v) for v in rng.integers(40, 220, 3))
    b = max(1, int(height * rng.uniform(0.03, 0.1)))
    framed = cv2.copyMakeBorder(window, b, b, b, b, cv2.BORDER_CONSTANT, value=(bezel,) * 3)
    my, mx = (int(height * rng.uniform(0.15, 0.6)) for _ in range(2))
    return cv2.copyMakeBorder(framed, my, my, mx, mx, cv2.BORDER_CONSTANT, value=housing)


def photograph(image: np.ndarray, rng: np.random.Generator, max_angle: float = 6.0) -> np.ndarray:
    """Camera effects on a strip: scale, shift, rotation, perspective, lighting, noise, blur (BGR in and out)."""
    height, width = image.shape[:2]
    scale = rng.uniform(0.9, 1.1)
    angle = rng.uniform(-max_angle, max_angle)
    matrix = np.vstack([cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale), [0, 0, 1]])
    matrix[:2, 2] += rng.uniform(-0.03, 0.03, 2) * [width, height]
    src = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    jitter = np.float32(rng.uniform(-0.04, 0.04, (4, 2)) * [width, height])
    warp = cv2.getPerspectiveTransform(src, src + jitter) @ matrix
    image = cv2.warpPerspective(image, warp, (width, height), borderMode=cv2.BORDER_REPLICATE)
    gx = np.linspace(rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.3), width, dtype=np.float32)[None, :, None]
    gy = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(1.0, 1.2), height, dtype=np.float32)[:, None, None]
    noise = rng.normal(0, rng.uniform(0, 8), image.shape).astype(np.float32)
    image = np.clip(image.astype(np.float32) * gx * gy * rng.uniform(0.7, 1.2) + noise, 0, 255).astype(np.uint8)
    sigma = float(rng.choice([0.0, 0.5, 0.9, 1.4]))
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0 else image
