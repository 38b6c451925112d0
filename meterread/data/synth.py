"""Synthetic meter photos with known readings, photographed the way phones and field cameras do.

Two register kinds: seven-segment LCDs (kWh) and mechanical counter wheels, whose last wheel may be half-rolled
between two digits (the label is the lower digit, as utilities read it, and part of it always shows: see MAX_ROLL;
a 9 rolling to 0 carries into the wheel before it). Around them: a meter housing, glass glare, perspective,
rotation, lighting gradients, blur, sensor noise and JPEG artefacts, at photo sizes from 640x480 to 2560x1440.
Deterministic by seed.

Writes a bucket in the nightly key layout (`{meter_id}/{YYYYmmddTHHMMSS}.jpg`) with monotonic readings per meter,
plus `annotations.jsonl` (the training/eval dataset format), so one folder is both a dataset split and a bucket.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from meterread.models.prompts import DEFAULT_PROMPTS

if TYPE_CHECKING:
    from meterread.data.real_photos import DigitSource

PHOTO_SIZES = ((640, 480), (1024, 768), (1280, 720), (1600, 1200), (1920, 1080), (2560, 1440))
METER_TYPES = ("electricity-lcd", "electricity-mechanical", "gas-mechanical", "water-mechanical")

# Segments a..g as (x0, y0, x1, y1) in a unit cell 1 wide, 2 high; which segments light for each digit.
_SEGMENTS = {
    "a": (0.15, 0.0, 0.85, 0.12), "b": (0.85, 0.08, 0.97, 0.95), "c": (0.85, 1.05, 0.97, 1.92),
    "d": (0.15, 1.88, 0.85, 2.0), "e": (0.03, 1.05, 0.15, 1.92), "f": (0.03, 0.08, 0.15, 0.95),
    "g": (0.15, 0.94, 0.85, 1.06),
}  # fmt: skip
_DIGIT_SEGMENTS = ["abcdef", "bc", "abdeg", "abcdg", "bcfg", "acdfg", "acdefg", "abc", "abcdefg", "abcdfg"]
_HOUSINGS = {  # BGR base colours of the meter body per meter type
    "electricity-lcd": ((200, 200, 200), (235, 235, 235)),
    "electricity-mechanical": ((40, 40, 40), (90, 90, 90)),
    "gas-mechanical": ((150, 160, 170), (210, 215, 220)),
    "water-mechanical": ((120, 60, 20), (200, 140, 80)),
}


@dataclass(frozen=True)
class MeterSample:
    """One synthetic photo: where it goes, its label and the meter it belongs to."""

    key: str
    label: str
    meter_id: str
    captured_at: datetime
    meter_type: str = "electricity-lcd"
    roll: float = 0.0  # how far the last wheel has rolled towards the next digit (mechanical only)


def format_reading(value: int, integer_digits: int, decimals: int) -> str:
    """Register text for a value in its smallest unit: 98459, 5, 1 -> '09845.9'."""
    text = str(value).zfill(integer_digits + decimals)[-(integer_digits + decimals) :]
    return f"{text[:-decimals]}.{text[-decimals:]}" if decimals else text


def _background(shape: tuple[int, int], colour) -> np.ndarray:
    image = np.empty((*shape, 3), np.uint8)
    image[:] = colour
    return image


def draw_seven_segment(panel: np.ndarray, text: str, colour, rng: np.random.Generator) -> None:
    """Draw `text` (digits and '.') across `panel` in seven-segment style, in place; unlit segments ghosted."""
    height, width = panel.shape[:2]
    digits = [c for c in text if c.isdigit()]
    cell_w = width / (len(digits) + 0.6)
    scale_x, scale_y = cell_w * rng.uniform(0.62, 0.76), height * rng.uniform(0.32, 0.38)
    x, top = cell_w * 0.3, height * 0.14
    slant = rng.uniform(0.0, 0.12)
    ghost = tuple(int(0.85 * p + 0.15 * c) for p, c in zip(panel[0, 0].tolist(), colour))
    for char in text:
        if char == ".":
            dot = (int(x - cell_w * 0.16), int(top + scale_y * 2.0))
            cv2.circle(panel, dot, max(int(scale_x * 0.09), 2), colour, -1, cv2.LINE_AA)
            continue
        for name, (x0, y0, x1, y1) in _SEGMENTS.items():
            corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
            points = np.stack(
                [x + corners[:, 0] * scale_x + (2 - corners[:, 1]) * slant * scale_x, top + corners[:, 1] * scale_y],
                axis=1,
            )
            lit = name in _DIGIT_SEGMENTS[int(char)]
            cv2.fillConvexPoly(panel, points.astype(np.int32), colour if lit else ghost, cv2.LINE_AA)
        x += cell_w


def render_lcd(label: str, rng: np.random.Generator, width: int) -> np.ndarray:
    """An LCD register window (BGR) showing `label`."""
    height = int(width * rng.uniform(0.22, 0.3))
    lcd = (int(rng.integers(150, 190)), int(rng.integers(175, 215)), int(rng.integers(140, 175)))
    panel = _background((height, width), lcd)
    draw_seven_segment(panel, label, tuple(int(v) for v in rng.integers(10, 50, 3)), rng)
    return panel


# How far the last wheel may have rolled. Glyphs fill the middle 62% of a wheel window (rows 0.19-0.81), so past
# 0.81 the lower digit has left the window and the picture shows only the next digit, a label no reader could
# recover; at 0.65 a quarter of the lower digit still shows. Real wheels beyond that look like the next digit.
MAX_ROLL = 0.65
ROLL_SHARE = 0.4  # of counter photos, by default
GLYPH_HEIGHT = 0.62  # of the wheel window


def _wheel_strip(digit: int, roll: float, cell: tuple[int, int], colours, font, thickness) -> np.ndarray:
    """One counter wheel window: `digit` rolled `roll` (0..1) of the way towards the next digit."""
    cell_w, cell_h = cell
    background, ink = colours
    tall = _background((cell_h * 2, cell_w), background)  # current digit above, next digit below
    scale = cv2.getFontScaleFromHeight(font, int(cell_h * GLYPH_HEIGHT), thickness)
    for slot, value in enumerate((digit, (digit + 1) % 10)):
        (text_w, text_h), _ = cv2.getTextSize(str(value), font, scale, thickness)
        origin = ((cell_w - text_w) // 2, slot * cell_h + (cell_h + text_h) // 2)
        cv2.putText(tall, str(value), origin, font, scale, ink, thickness, cv2.LINE_AA)
    offset = int(round(roll * cell_h))
    return tall[offset : offset + cell_h]


def render_mechanical(label: str, roll: float, rng: np.random.Generator, width: int) -> np.ndarray:
    """A counter window (BGR) of wheels showing `label`; the last wheel rolled by `roll`; decimals on red wheels."""
    digits = [int(c) for c in label if c.isdigit()]
    decimals = len(label.split(".")[1]) if "." in label else 0
    cell_w = width // len(digits)
    cell_h = int(cell_w * rng.uniform(1.3, 1.7))
    font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX]))
    thickness = max(1, int(cell_w / rng.uniform(9, 14)))
    cells = []
    for index, digit in enumerate(digits):
        is_decimal = index >= len(digits) - decimals
        colours = ((30, 30, 170), (235, 235, 235)) if is_decimal else ((25, 25, 25), (235, 235, 235))
        cell = _wheel_strip(
            digit, roll if index == len(digits) - 1 else 0.0, (cell_w, cell_h), colours, font, thickness
        )
        shade = np.linspace(0.65, 1.0, cell_h // 2, dtype=np.float32)  # wheels are round: darker at the edges
        profile = np.concatenate([shade, shade[::-1], [0.65] * (cell_h - 2 * (cell_h // 2))])[:, None, None]
        cell = (cell.astype(np.float32) * profile).astype(np.uint8)
        cv2.line(cell, (cell_w - 1, 0), (cell_w - 1, cell_h), (10, 10, 10), max(1, cell_w // 20))
        cells.append(cell)
    return np.hstack(cells)


def add_glare(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft elliptical highlight, as a reflection on the meter glass."""
    height, width = photo.shape[:2]
    mask = np.zeros((height // 4 + 1, width // 4 + 1), np.float32)
    centre = (int(rng.uniform(0.2, 0.8) * mask.shape[1]), int(rng.uniform(0.2, 0.8) * mask.shape[0]))
    axes = (int(mask.shape[1] * rng.uniform(0.05, 0.2)), int(mask.shape[0] * rng.uniform(0.03, 0.12)))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(axes) / 2 + 1)
    mask = cv2.resize(mask, (width, height))[..., None] * rng.uniform(0.25, 0.6)
    return (photo.astype(np.float32) * (1 - mask) + 255 * mask).astype(np.uint8)


def compose_photo(
    register: np.ndarray, meter_type: str, rng: np.random.Generator, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Place a register window in a meter housing on a background and photograph it (BGR, `size` = (w, h)).
    Returns the photo and the register window's corners in it (4x2, for testing display localisation)."""
    width, height = size
    photo = _background((height, width), tuple(int(v) for v in rng.integers(30, 200, 3)))
    low, high = _HOUSINGS[meter_type]
    housing = tuple(int(rng.integers(lo, hi + 1)) for lo, hi in zip(low, high))
    mx, my = int(width * rng.uniform(0.04, 0.14)), int(height * rng.uniform(0.04, 0.14))
    cv2.rectangle(photo, (mx, my), (width - mx, height - my), housing, -1)
    # 1. register window, scaled to 40-65% of the photo width, with a frame and a unit label
    target_w = int(width * rng.uniform(0.4, 0.65))
    window = cv2.resize(
        register, (target_w, int(register.shape[0] * target_w / register.shape[1])), interpolation=cv2.INTER_AREA
    )
    wh, ww = window.shape[:2]
    px = int((width - ww) * rng.uniform(0.3, 0.7))
    py = int((height - wh) * rng.uniform(0.25, 0.55))
    photo[py : py + wh, px : px + ww] = window
    frame = max(2, ww // 150)
    bezel = int(rng.integers(170, 215)) if np.mean(housing) < 128 else int(rng.integers(35, 75))  # contrasts
    cv2.rectangle(photo, (px - frame, py - frame), (px + ww + frame, py + wh + frame), (bezel,) * 3, frame)
    unit = "kWh" if meter_type.startswith("electricity") else "m3"
    cv2.putText(
        photo,
        unit,
        (px + ww - int(ww * 0.15), py + wh + int(wh * 0.5)),
        cv2.FONT_HERSHEY_SIMPLEX,
        wh / 100,
        (30, 30, 30),
        max(1, wh // 40),
        cv2.LINE_AA,
    )
    # 2. camera: rotation + perspective, glare, lighting gradient, noise, blur
    photo, corners = tilt_camera(photo, (px, py, ww, wh), rng, max_angle=8, jitter=0.05)
    if rng.random() < 0.5:
        photo = add_glare(photo, rng)
    return light_noise_blur(photo, rng), corners


def tilt_camera(
    photo: np.ndarray,
    window: tuple[int, int, int, int],
    rng: np.random.Generator,
    max_angle: float,
    jitter: float,
    scale: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (up to `max_angle` degrees, optionally zoomed by a factor drawn from `scale`) and perspective-warp the
    photo (corners moved up to `jitter` of its size); returns it and where the `window` (x, y, w, h) landed (4x2)."""
    height, width = photo.shape[:2]
    angle = rng.uniform(-max_angle, max_angle)
    zoom = rng.uniform(*scale) if scale else 1.0
    rotation = np.vstack([cv2.getRotationMatrix2D((width / 2, height / 2), angle, zoom), [0, 0, 1]])
    src = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    moved = np.float32(rng.uniform(-jitter, jitter, (4, 2)) * [width, height])
    warp = cv2.getPerspectiveTransform(src, src + moved) @ rotation
    photo = cv2.warpPerspective(photo, warp, (width, height), borderMode=cv2.BORDER_REPLICATE)
    x, y, w, h = window
    corners = cv2.perspectiveTransform(np.float32([[[x, y], [x + w, y], [x + w, y + h], [x, y + h]]]), warp)[0]
    return photo, corners


def light_noise_blur(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The last camera effects: a lighting gradient, sensor noise and (scaled to the photo's width) blur."""
    height, width = photo.shape[:2]
    gx = np.linspace(rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.25), width, dtype=np.float32)[None, :, None]
    gy = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.15), height, dtype=np.float32)[:, None, None]
    noise = rng.normal(0, rng.uniform(2, 9), (height // 2 + 1, width // 2 + 1, 3)).astype(np.float32)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_NEAREST)
    photo = np.clip(photo.astype(np.float32) * gx * gy + noise, 0, 255).astype(np.uint8)
    sigma = rng.choice([0.0, 0.6, 1.2, 2.0]) * width / 1280
    return cv2.GaussianBlur(photo, (0, 0), sigma) if sigma > 0 else photo


def render_register(label: str, rng: np.random.Generator, meter_type: str, roll: float = 0.0) -> np.ndarray:
    """The register window alone (BGR): an LCD or a row of counter wheels."""
    if meter_type == "electricity-lcd":
        return render_lcd(label, rng, 600)
    return render_mechanical(label, roll, rng, 600)


def render_meter(
    label: str,
    rng: np.random.Generator,
    size: tuple[int, int] = (640, 480),
    meter_type: str = "electricity-lcd",
    roll: float = 0.0,
) -> np.ndarray:
    """A photo (BGR uint8) of a `meter_type` meter whose register shows `label` (last wheel rolled by `roll`)."""
    return compose_photo(render_register(label, rng, meter_type, roll), meter_type, rng, size)[0]


def encode_jpeg(photo: np.ndarray, rng: np.random.Generator, quality: tuple[int, int] = (45, 95)) -> bytes:
    """JPEG bytes at a quality drawn from `quality` (low inclusive, high exclusive)."""
    ok, encoded = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*quality))])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes()


def _register_shape(meter_type: str) -> tuple[int, int]:
    """(integer digits, decimals) of a meter type's register."""
    return {
        "electricity-lcd": (5, 1),
        "electricity-mechanical": (6, 1),
        "gas-mechanical": (5, 3),
        "water-mechanical": (5, 3),
    }[meter_type]


def plan_samples(
    n: int,
    seed: int,
    meters: int | None = None,
    start: datetime | None = None,
    meter_types: tuple[str, ...] = METER_TYPES,
    roll_share: float = ROLL_SHARE,
) -> list[tuple[MeterSample, int]]:
    """Readings for `n` photos over several meters, monotonic per meter; returns samples with their seeds.
    `roll_share`: the share of counter photos whose last wheel is caught rolling."""
    rng = np.random.default_rng(seed)
    meters = meters or max(1, n // 6)
    start = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
    samples = []
    for meter in range(meters):
        meter_id = f"MTR-{seed:04d}-{meter:04d}"
        meter_type = str(rng.choice(meter_types))
        integer_digits, decimals = _register_shape(meter_type)
        value = int(rng.integers(0, 10 ** (integer_digits + decimals) // 2))
        when = start + timedelta(hours=int(rng.integers(0, 48)))
        for _ in range(n // meters + (1 if meter < n % meters else 0)):
            rolling = meter_type != "electricity-lcd" and rng.random() < roll_share
            roll = float(rng.uniform(0, MAX_ROLL)) if rolling else 0.0
            label = format_reading(value, integer_digits, decimals)
            key = f"{meter_id}/{when:%Y%m%dT%H%M%S}.jpg"
            sample = MeterSample(key, label, meter_id, when, meter_type, roll)
            samples.append((sample, int(rng.integers(0, 2**31))))
            value += int(rng.integers(0, 10 ** (decimals + 2)))
            when += timedelta(days=1, minutes=int(rng.integers(0, 120)))
    return samples


def parse_sizes(text: str) -> list[tuple[int, int]] | None:
    """'mixed' -> None (all PHOTO_SIZES); 'WxH[,WxH...]' -> those sizes. Raises ValueError."""
    if text.strip().lower() == "mixed":
        return None
    sizes = []
    for part in text.lower().split(","):
        width, _, height = part.strip().partition("x")
        if not (width.isdigit() and height.isdigit() and int(width) >= 64 and int(height) >= 64):
            raise ValueError(f"{part.strip()!r} is not WxH with both sides >= 64 (e.g. 640x480)")
        sizes.append((int(width), int(height)))
    return sizes


def pick_size(size, rng: np.random.Generator) -> tuple[int, int]:
    """`(w, h)` as given; a list of sizes -> one of them; None -> one of PHOTO_SIZES."""
    choices = PHOTO_SIZES if size is None else [size] if isinstance(size[0], int) else list(size)
    return tuple(choices[int(rng.integers(0, len(choices)))])


def _render_and_save(job: tuple[MeterSample, int, object, str, DigitSource | None]) -> str:
    """Render one planned photo into `out` (pure in its seed) and return its annotation line; with `digits`, the
    register is built from real digit crops."""
    sample, sample_seed, size, out, digits = job
    rng = np.random.default_rng(sample_seed)
    label, model = sample.label, None
    if digits is None:
        photo = render_meter(label, rng, pick_size(size, rng), sample.meter_type, sample.roll)
    else:
        photo, label, model, _ = digits.render(label, sample.meter_type, sample.roll > 0, rng, pick_size(size, rng))
    path = Path(out) / sample.key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_jpeg(photo, rng))
    return json.dumps(
        {
            "image": sample.key,
            "prefix": DEFAULT_PROMPTS["paligemma"],
            "suffix": label,
            "meter_id": sample.meter_id,
            "meter_type": sample.meter_type,
            **({"meter_model": model} if model else {}),
        }
    )


def write_bucket(
    out_dir: str | Path,
    n: int,
    seed: int,
    size: tuple[int, int] | list[tuple[int, int]] | None = (640, 480),
    meter_types: tuple[str, ...] = METER_TYPES,
    progress: bool = False,
    workers: int = 1,
    roll_share: float = ROLL_SHARE,
    digits: DigitSource | None = None,
) -> list[MeterSample]:
    """Render `n` photos into `out_dir` (key layout) plus `annotations.jsonl`; `size=None` draws photo sizes
    from PHOTO_SIZES. Every photo has its own seed, so `workers` processes give the same bytes. Returns the samples."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    out = Path(out_dir)
    planned = plan_samples(n, seed, meter_types=meter_types, roll_share=roll_share)
    jobs = [(sample, sample_seed, size, str(out), digits) for sample, sample_seed in planned]
    bar = dict(total=len(jobs), desc="synthesising", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            lines = list(tqdm(pool.map(_render_and_save, jobs, chunksize=16), **bar))
    else:
        lines = [_render_and_save(job) for job in tqdm(jobs, **bar)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    return [sample for sample, _ in planned]


def write_dataset(
    out_dir: str | Path,
    sizes: dict[str, int],
    seed: int,
    size: tuple[int, int] | list[tuple[int, int]] | None = (640, 480),
    meter_types: tuple[str, ...] = METER_TYPES,
    progress: bool = False,
    workers: int = 1,
    roll_share: float = ROLL_SHARE,
    digits: DigitSource | None = None,
) -> dict:
    """Write `{out}/{split}/` buckets with a distinct seed per split; returns counts and images/s. With `digits` of
    part "auto", each split takes its digits from the crop part of the same name (train, valid, test); only train
    is recoloured (`DigitSource.for_split`)."""
    started, counts = time.perf_counter(), {}
    for offset, (split, n) in enumerate(sizes.items()):
        if n:
            counts[split] = len(
                write_bucket(
                    Path(out_dir) / split,
                    n,
                    seed * 1000 + offset,
                    size,
                    meter_types,
                    progress,
                    workers,
                    roll_share,
                    digits.for_split(split) if digits is not None else None,
                )
            )
    elapsed = time.perf_counter() - started
    return {"counts": counts, "seconds": elapsed, "images_per_s": sum(counts.values()) / max(elapsed, 1e-9)}
