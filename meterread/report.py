"""Evaluation report: `metrics.json` + a self-contained HTML page (risk-coverage plot as inline SVG, error gallery
with embedded thumbnails). Rendering is pure; `write_report` is the I/O edge."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def svg_curve(points: Sequence[tuple[float, float]], width: int = 420, height: int = 260) -> str:
    """Risk-coverage curve (coverage on x, accuracy on y, both 0..1) as an SVG string."""
    pad = 36

    def x(value: float) -> float:
        return pad + value * (width - 2 * pad)

    def y(value: float) -> float:
        return height - pad - value * (height - 2 * pad)

    path = " ".join(f"{'M' if i == 0 else 'L'}{x(c):.1f},{y(a):.1f}" for i, (c, a) in enumerate(points))
    ticks = "".join(
        f'<text x="{x(t):.0f}" y="{height - 12}" font-size="10" text-anchor="middle">{t:.1f}</text>'
        f'<text x="{pad - 6}" y="{y(t) + 3:.0f}" font-size="10" text-anchor="end">{t:.1f}</text>'
        for t in (0.0, 0.5, 1.0)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" fill="none" stroke="#999"/>'
        f'<path d="{path}" fill="none" stroke="#1f77b4" stroke-width="2"/>{ticks}'
        f'<text x="{width / 2}" y="{height - 1}" font-size="11" text-anchor="middle">coverage</text>'
        f'<text x="10" y="{height / 2}" font-size="11" transform="rotate(-90 10 {height / 2})">accuracy</text></svg>'
    )


def thumbnail_data_uri(rgb: np.ndarray, width: int = 160) -> str:
    scale = width / rgb.shape[1]
    small = cv2.resize(rgb, (width, max(1, int(rgb.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode() if ok else ""


def render_html(title: str, metrics: dict, curve: Sequence[tuple[float, float]], gallery: Sequence[dict]) -> str:
    """Whole report page. `gallery` items: label, text, confidence, image (URI), thumbnail (data URI or '')."""

    def fmt(value) -> str:
        return "–" if value is None else f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))

    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{fmt(value)}</td></tr>"
        for name, value in [
            ("examples", metrics["count"]),
            ("exact match", metrics["exact_match"]),
            ("character error rate", metrics["character_error_rate"]),
            ("parse rate", metrics["parse_rate"]),
        ]
        + [(f"accuracy at {float(c):.0%} coverage", v) for c, v in metrics["accuracy_at_coverage"].items()]
    )
    types = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{group['count']}</td><td>{fmt(group['exact_match'])}</td></tr>"
        for name, group in metrics["by_meter_type"].items()
    )
    cards = "".join(
        f'<figure><img src="{item.get("thumbnail", "")}" alt=""/><figcaption>label <b>{html.escape(item["label"])}'
        f"</b><br/>read <b>{html.escape(str(item['text']))}</b> ({fmt(item['confidence'])})<br/>"
        f"<small>{html.escape(str(item['image']))}</small></figcaption></figure>"
        for item in gallery
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td{border:1px solid #ccc;padding:4px 8px}"
        "figure{display:inline-block;width:180px;margin:6px;vertical-align:top}img{max-width:170px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><h2>Metrics</h2><table>{rows}</table>"
        f"<h2>Risk-coverage</h2><p>Accuracy on the most confident fraction of readings.</p>{svg_curve(curve)}"
        f"<h2>By meter type</h2><table><tr><td>type</td><td>count</td><td>exact match</td></tr>{types}</table>"
        f"<h2>Worst examples (wrong, most confident first)</h2>{cards or '<p>none</p>'}</body></html>"
    )


def write_report(out_dir: str | Path, title: str, metrics: dict, curve, gallery) -> tuple[Path, Path]:
    """Write metrics.json and report.html; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path, report_path = out / "metrics.json", out / "report.html"
    metrics_path.write_text(json.dumps(metrics, indent=2))
    report_path.write_text(render_html(title, metrics, curve, gallery))
    return metrics_path, report_path
