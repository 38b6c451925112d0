"""Synthetic meter photos with known readings: seven-segment LCD registers in a meter housing, photographed.

Deterministic by seed. Writes a bucket in the nightly layout (`{meter_id}/{YYYYmmddTHHMMSS}.jpg`) with
monotonic readings per meter, plus `annotations.jsonl` labels (the training/eval dataset format).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np

from meterread.models.paligemma import DEFAULT_PROMPT

# Segments a..g as (x0, y0, x1, y1) in a unit cell 1 wide, 2 high; which segments light for each digit.
_SEGMENTS = {
    "a": (0.15, 0.0, 0.85, 0.12),
    "b": (0.85, 0.08, 0.97, 0.95),
    "c": (0.85, 1.05, 0.97, 1.92),
    "d": (0.15, 1.88, 0.85, 2.0),
    "e": (0.03, 1.05, 0.15, 1.92),
    "f": (0.03, 0.08, 0.15, 0.95),
    "g": (0.15, 0.94, 0.85, 1.06),
}
_DIGIT_SEGMENTS = ["abcdef", "bc", "abdeg", "abcdg", "bcfg", "acdfg", "acdefg", "abc", "abcdefg", "abcdfg"]


@dataclass(frozen=True)
class MeterSample:
    """One synthetic photo: where it goes, its label and the meter it belongs to."""

    key: str
    label: str
    meter_id: str
    captured_at: datetime


def format_reading(value: int, integer_digits: int, decimals: int) -> str:
    """Register text for a value in its smallest unit: 98459, 5, 1 -> '09845.9'."""
    text = str(value).zfill(integer_digits + decimals)
    return f"{text[:-decimals]}.{text[-decimals:]}" if decimals else text


def draw_seven_segment(panel: np.ndarray, text: str, color: tuple[int, int, int], rng: np.random.Generator) -> None:
    """Draw `text` (digits and '.') across `panel` in seven-segment style, in place."""
    height, width = panel.shape[:2]
    digits = [c for c in text if c.isdigit()]
    cell_w = width / (len(digits) + 0.6)
    scale_x, scale_y = cell_w * 0.72, height * 0.36
    x, top = cell_w * 0.3, height * 0.14
    slant = rng.uniform(0.0, 0.12)
    for index, char in enumerate(text):
        if char == ".":
            dot = (int(x - cell_w * 0.16), int(top + scale_y * 2.0))
            cv2.circle(panel, dot, max(int(scale_x * 0.09), 2), color, -1, cv2.LINE_AA)
            continue
        for name in _DIGIT_SEGMENTS[int(char)]:
            x0, y0, x1, y1 = _SEGMENTS[name]
            corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
            points = np.stack(
                [x + corners[:, 0] * scale_x + (2 - corners[:, 1]) * slant * scale_x, top + corners[:, 1] * scale_y],
                axis=1,
            )
            cv2.fillConvexPoly(panel, points.astype(np.int32), color, cv2.LINE_AA)
        x += cell_w
        if index + 1 < len(text) and text[index + 1] != ".":
            continue


def render_meter(label: str, rng: np.random.Generator, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A photo (BGR uint8, `size` = (width, height)) of a meter whose LCD shows `label`."""
    width, height = size
    background = rng.integers(40, 200, 3).astype(np.uint8)
    photo = np.empty((height, width, 3), np.uint8)
    photo[:] = background
    # 1. Housing: a light box filling most of the frame.
    housing = rng.integers(170, 240, 3).tolist()
    margin_x, margin_y = int(width * rng.uniform(0.05, 0.15)), int(height * rng.uniform(0.05, 0.15))
    cv2.rectangle(photo, (margin_x, margin_y), (width - margin_x, height - margin_y), housing, -1)
    # 2. LCD panel with the digits, drawn at panel resolution then pasted.
    panel_w = int(width * rng.uniform(0.45, 0.65))
    panel_h = int(panel_w * rng.uniform(0.22, 0.3))
    lcd = np.array([rng.integers(150, 190), rng.integers(175, 215), rng.integers(140, 175)], np.uint8)
    panel = np.empty((panel_h, panel_w, 3), np.uint8)
    panel[:] = lcd
    ink = tuple(int(v) for v in rng.integers(10, 50, 3))
    draw_seven_segment(panel, label, ink, rng)
    px = int((width - panel_w) * rng.uniform(0.35, 0.65))
    py = int((height - panel_h) * rng.uniform(0.3, 0.5))
    photo[py : py + panel_h, px : px + panel_w] = panel
    cv2.rectangle(photo, (px - 3, py - 3), (px + panel_w + 3, py + panel_h + 3), (60, 60, 60), 3)
    cv2.putText(
        photo,
        "kWh",
        (px + panel_w - int(panel_w * 0.18), py + panel_h + int(panel_h * 0.45)),
        cv2.FONT_HERSHEY_SIMPLEX,
        panel_h / 90,
        (40, 40, 40),
        2,
        cv2.LINE_AA,
    )
    # 3. Camera: small rotation and perspective, lighting gradient, blur, noise.
    jitter = np.float32(rng.uniform(-0.04, 0.04, (4, 2)) * [width, height])
    src = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    warp = cv2.getPerspectiveTransform(src, src + jitter)
    photo = cv2.warpPerspective(photo, warp, (width, height), borderMode=cv2.BORDER_REPLICATE)
    gradient = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.2), width, dtype=np.float32)[None, :, None]
    photo = np.clip(photo.astype(np.float32) * gradient + rng.normal(0, rng.uniform(2, 8), photo.shape), 0, 255)
    photo = photo.astype(np.uint8)
    kernel = int(rng.choice([1, 3, 5]))
    return cv2.GaussianBlur(photo, (kernel, kernel), 0) if kernel > 1 else photo


def plan_samples(
    n: int, seed: int, meters: int | None = None, start: datetime | None = None
) -> list[tuple[MeterSample, int]]:
    """Readings for `n` photos over a few meters, monotonic per meter; returns samples with their seeds."""
    rng = np.random.default_rng(seed)
    meters = meters or max(1, n // 6)
    start = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
    samples = []
    for meter in range(meters):
        meter_id = f"MTR-{seed:04d}-{meter:04d}"
        value = int(rng.integers(0, 10**5))
        when = start + timedelta(hours=int(rng.integers(0, 48)))
        count = n // meters + (1 if meter < n % meters else 0)
        for _ in range(count):
            label = format_reading(value, 5, 1)
            key = f"{meter_id}/{when:%Y%m%dT%H%M%S}.jpg"
            samples.append((MeterSample(key, label, meter_id, when), int(rng.integers(0, 2**31))))
            value += int(rng.integers(0, 400))
            when += timedelta(days=1, minutes=int(rng.integers(0, 120)))
    return samples


def write_bucket(out_dir: str | Path, n: int, seed: int, size: tuple[int, int] = (640, 480)) -> list[MeterSample]:
    """Render `n` photos into `out_dir` in the nightly key layout plus `annotations.jsonl`; returns samples."""
    out = Path(out_dir)
    samples = []
    lines = []
    for sample, sample_seed in plan_samples(n, seed):
        rng = np.random.default_rng(sample_seed)
        photo = render_meter(sample.label, rng, size)
        path = out / sample.key
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, encoded = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 95))])
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
            raise RuntimeError("JPEG encoding failed")
        path.write_bytes(encoded.tobytes())
        samples.append(sample)
        lines.append(
            json.dumps(
                {
                    "image": sample.key,
                    "prefix": DEFAULT_PROMPT,
                    "suffix": sample.label,
                    "meter_id": sample.meter_id,
                    "meter_type": "electricity-lcd",
                }
            )
        )
    (out / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    return samples
