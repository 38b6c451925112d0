"""Evaluation report: `metrics.json`, a self-contained HTML page (risk-coverage plot as inline SVG, error gallery
with embedded thumbnails) and `predictions.parquet` (one row per image). Rendering is pure; `write_report` is the
I/O edge."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def accuracy_floor(points: Sequence[tuple[float, float]], step: float = 0.05) -> float:
    """The y-axis floor that zooms the plot to where accuracy moves: the lowest accuracy, rounded down to `step`."""
    values = [a for _, a in points if a is not None]
    if not values:
        return 0.0
    return max(0.0, min(math.floor(min(values) / step) * step, 1.0 - step))  # never a flat (1, 1) axis


def svg_plot(
    series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]],
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] = (0.0, 1.0),
    width: int = 420,
    height: int = 260,
    diagonal: bool = False,
) -> str:
    """Line plot as an SVG string: `series` of (name, colour, [(x, y)...]) with x in 0..1 and y in `y_range`;
    `diagonal` draws y = x (perfect calibration)."""
    pad = 40
    low, high = y_range

    def x(value: float) -> float:
        return pad + value * (width - 2 * pad)

    def y(value: float) -> float:
        return height - pad - (value - low) / max(high - low, 1e-9) * (height - 2 * pad)

    paths = ""
    for index, (name, colour, points) in enumerate(series):
        kept = [(c, a) for c, a in points if a is not None]
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(c):.1f},{y(a):.1f}" for i, (c, a) in enumerate(kept))
        dots = "".join(f'<circle cx="{x(c):.1f}" cy="{y(a):.1f}" r="2" fill="{colour}"/>' for c, a in kept)
        paths += f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>{dots}'
        paths += f'<text x="{width - pad}" y="{pad - 8 - 12 * index}" font-size="10" fill="{colour}" '
        paths += f'text-anchor="end">{html.escape(name)}</text>'
    if diagonal:
        paths += (
            f'<path d="M{x(low):.1f},{y(low):.1f} L{x(high):.1f},{y(high):.1f}" stroke="#bbb" stroke-dasharray="4"/>'
        )
    y_ticks = (low, (low + high) / 2, high)
    ticks = "".join(
        f'<text x="{x(t):.0f}" y="{height - pad + 14}" font-size="10" text-anchor="middle">{t:.1f}</text>'
        for t in (0.0, 0.5, 1.0)
    ) + "".join(
        f'<text x="{pad - 6}" y="{y(t) + 3:.0f}" font-size="10" text-anchor="end">{t:.3g}</text>' for t in y_ticks
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" fill="none" stroke="#999"/>'
        f"{paths}{ticks}"
        f'<text x="{width / 2}" y="{height - 4}" font-size="11" text-anchor="middle">{html.escape(x_label)}</text>'
        f'<text x="10" y="{height / 2}" font-size="11" transform="rotate(-90 10 {height / 2})">'
        f"{html.escape(y_label)}</text></svg>"
    )


def svg_curve(points: Sequence[tuple[float, float]], width: int = 420, height: int = 260) -> str:
    """Risk-coverage curve (coverage on x, accuracy on y, zoomed to where it moves) as an SVG string."""
    return svg_plot(
        [("model", "#1f77b4", points)], "coverage", "accuracy", (accuracy_floor(points), 1.0), width, height
    )


def reliability_svg(calibration: Sequence[dict]) -> str:
    """Reliability plot: share read right against mean confidence per bin (the diagonal is perfect calibration)."""
    points = [(b["mean_confidence"], b["accuracy"]) for b in calibration if b["count"]]
    return svg_plot([("model", "#d62728", points)], "confidence", "share read right", diagonal=True)


def thumbnail_data_uri(rgb: np.ndarray, width: int = 160) -> str:
    scale = width / rgb.shape[1]
    small = cv2.resize(rgb, (width, max(1, int(rgb.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode() if ok else ""


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(title: str, metrics: dict, curve: Sequence[tuple[float, float]], gallery: Sequence[dict]) -> str:
    """Whole report page. `gallery` items: label, text, confidence, image (URI), thumbnail (data URI or '').
    A `baseline` entry in `metrics` (a peer OCR on the same photos) is shown beside the model."""
    peer = metrics.get("baseline") or {}
    header = ["metric", "model"] + ([f"baseline: {peer['name']}"] if peer else [])
    names = [
        ("examples", "count"),
        ("exact match", "exact_match"),
        ("digits exact (point aside)", "digits_exact_match"),
        ("character error rate", "character_error_rate"),
        ("parse rate", "parse_rate"),
    ]
    rows = [[label, metrics.get(key)] + ([peer.get(key)] if peer else []) for label, key in names]
    rows += [
        [f"accuracy at {float(c):.0%} coverage", v] + ([peer["accuracy_at_coverage"].get(c)] if peer else [])
        for c, v in metrics["accuracy_at_coverage"].items()
    ]

    def grouped(key: str) -> str:
        groups = metrics.get(key, {})
        theirs = peer.get(key, {})
        return _table(
            ["group", "count", "exact match", "digits (point aside)"] + (["baseline exact match"] if peer else []),
            [
                [name, g["count"], g["exact_match"], g.get("digits_exact_match")]
                + ([theirs.get(name, {}).get("exact_match")] if peer else [])
                for name, g in groups.items()
            ],
        )

    thresholds = _table(
        ["min_confidence", "flagged share", "wrong among accepted"],
        [[r["min_confidence"], r["flagged_share"], r["wrong_accepted_share"]] for r in metrics.get("thresholds", [])],
    )
    cards = "".join(
        f'<figure><img src="{item.get("thumbnail", "")}" alt=""/><figcaption>label <b>{html.escape(item["label"])}'
        f"</b><br/>read <b>{html.escape(str(item['text']))}</b> ({_fmt(item['confidence'])})<br/>"
        f"<small>{html.escape(str(item['image']))}</small></figcaption></figure>"
        for item in gallery
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}"
        "figure{display:inline-block;width:180px;margin:6px;vertical-align:top}img{max-width:170px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><h2>Metrics</h2>{_table(header, rows)}"
        "<h2>Which threshold?</h2><p>Readings below <code>min_confidence</code> are flagged for review; the rest "
        f"are accepted.</p>{thresholds}"
        "<h2>Risk-coverage</h2><p>Accuracy on the most confident fraction of readings (y axis zoomed to where the "
        f"curve moves).</p>{svg_curve(curve)}"
        "<h2>Reliability</h2><p>Share read right against confidence, per confidence bin; points under the dashed "
        f"diagonal are over-confident.</p>{reliability_svg(metrics.get('calibration', []))}"
        f"<h2>By meter model</h2>{grouped('by_meter_model')}"
        f"<h2>By meter type</h2>{grouped('by_meter_type')}"
        f"<h2>Worst examples (wrong, most confident first)</h2>{cards or '<p>none</p>'}</body></html>"
    )


PREDICTION_COLUMNS = {
    "image": "string",
    "meter_model": "string",
    "meter_type": "string",
    "label": "string",
    "text": "string",
    "confidence": "float64",
    "exact": "bool",
    "digits_exact": "bool",
    "baseline_text": "string",
    "baseline_confidence": "float64",
    "baseline_exact": "bool",
    "baseline_digits_exact": "bool",
}


def write_predictions(path: Path, rows: Sequence[dict], with_baseline: bool = False) -> Path:
    """Write `evaluate.prediction_rows` to Parquet with a fixed schema (the baseline's columns only `with_baseline`),
    so an empty or all-null column keeps its type. Raises ValueError when a row's keys are not the schema's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [name for name in PREDICTION_COLUMNS if with_baseline or not name.startswith("baseline_")]
    if any(set(row) != set(names) for row in rows):
        raise ValueError(f"prediction rows must have exactly the columns {names}")
    schema = pa.schema([(name, pa.type_for_alias(PREDICTION_COLUMNS[name])) for name in names])
    pq.write_table(pa.Table.from_pylist(list(rows), schema=schema), path)
    return path


def write_report(
    out_dir: str | Path, title: str, metrics: dict, curve, gallery, predictions: Sequence[dict] = ()
) -> tuple[Path, Path, Path]:
    """Write metrics.json, report.html and predictions.parquet (the baseline's columns where `metrics` has a
    baseline); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path, report_path = out / "metrics.json", out / "report.html"
    metrics_path.write_text(json.dumps(metrics, indent=2))
    report_path.write_text(render_html(title, metrics, curve, gallery))
    return metrics_path, report_path, write_predictions(out / "predictions.parquet", predictions, "baseline" in metrics)
