"""`meterread bench --history ROWS`: does a night cost what the night holds, whatever the output's history?

For each size, an output is filled with that many synthetic rows (written directly as Parquet, no model; one
file per capture date, the night's own meters among them, folded into the state as the nights before would have),
then one night of `n` new photos is read into it by `meterread read` in a fresh process. Reported per size: the
night's wall time and peak RSS (that process's own high-water mark), and both as ratios to the first size.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from meterread.read import sink, state
from meterread.storage import resolve

ROWS_PER_FILE = 5_000  # rows per synthetic dataset file (about one busy shard of one night)
HISTORY_METERS = 20_000  # meters the synthetic history spreads over
FIRST_NIGHT_PHOTO = datetime(2026, 1, 1, tzinfo=timezone.utc)  # synth.plan_samples' first capture time


def parse_history(text: str) -> list[int]:
    """'0,1000000' -> [0, 1000000]; every size a non-negative integer, at least one."""
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--history takes comma-separated row counts, e.g. 0,1000000; got {text!r}") from None
    if not sizes or min(sizes) < 0:
        raise ValueError(f"--history takes non-negative row counts, e.g. 0,1000000; got {text!r}")
    return sizes


def history_file(rows: int, first_row: int, day: date, meters: list[str], rng: np.random.Generator) -> pa.Table:
    """`rows` accepted readings captured on `day`: row i belongs to meter (first_row + i) % len(meters), and each
    meter's reading grows by one unit per day, so the history validates as a plausible series."""
    index = np.arange(first_row, first_row + rows)
    meter_index = index % len(meters)
    seconds = (index // len(meters)) % 86_400
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    day_number = (day - date(2000, 1, 1)).days
    meter_ids = [meters[i] for i in meter_index]
    captured = [start + timedelta(seconds=int(s)) for s in seconds]
    keys = [f"{m}/{t:%Y%m%dT%H%M%S}.jpg" for m, t in zip(meter_ids, captured)]
    shas = rng.bytes(32 * rows).hex()
    readings = pa.array(meter_index * 1_000 + day_number, pa.int32()).cast(sink.READING_TYPE)
    columns = {
        "run_id": ["history"] * rows,
        "image_uri": [f"s3://history-bucket/{key}" for key in keys],
        "image_etag": [shas[64 * i : 64 * i + 32] for i in range(rows)],
        "image_bytes": [60_000] * rows,
        "content_sha256": [shas[64 * i : 64 * i + 64] for i in range(rows)],
        "meter_id": meter_ids,
        "captured_at": captured,
        "captured_at_source": ["key"] * rows,
        "reading_text": None,
        "reading": readings,
        "confidence": [0.99] * rows,
        "status": ["accepted"] * rows,
        "reasons": [[]] * rows,
        "model_fingerprint": ["history-model"] * rows,
        "processed_at": [start + timedelta(days=1)] * rows,
        "reason_codes": [[]] * rows,
    }
    arrays = [
        pa.array(columns[f.name], f.type) if columns.get(f.name) is not None else pa.nulls(rows, f.type)
        for f in sink.FILE_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=sink.FILE_SCHEMA)


def fill_history(
    output: Path, rows: int, night_meters: list[str], seed: int = 0, meter_count: int = HISTORY_METERS
) -> int:
    """Write `rows` synthetic rows into the dataset at `output` (the night's meters first among `meter_count`
    meters), ending the day before the night's first photo, and fold them into the state. Returns files written."""
    meters = night_meters + [f"HIST-{i:06d}" for i in range(max(meter_count - len(night_meters), 0))]
    rng = np.random.default_rng(seed)
    fs, root = resolve(str(output))
    files = -(-rows // ROWS_PER_FILE)
    for number in range(files):
        day = (FIRST_NIGHT_PHOTO - timedelta(days=files - number)).date()
        count = min(ROWS_PER_FILE, rows - number * ROWS_PER_FILE)
        table = history_file(count, number * ROWS_PER_FILE, day, meters, rng)
        path = f"{root}/{sink.PARTITION_COLUMN}={day.isoformat()}/{sink.part_name('history', f'f{number:06d}')}"
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as handle:
            handle.write(sink.table_to_parquet_bytes(table))
    state.fold(fs, root)
    return files


def night_meters(source: Path) -> list[str]:
    """Meter ids of the photos under `source` (synth's key layout: METER/TIMESTAMP.jpg)."""
    return sorted({path.parent.name for path in source.rglob("*.jpg")})


NIGHT = """
import json, sys
from meterread.cli import main
try:
    main()
except SystemExit as stop:
    code = stop.code or 0
else:
    code = 0
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print(json.dumps({"peak_rss_mb": int(peak[0].split()[1]) / 1024 if peak else None}))
sys.exit(code)
"""


def run_night(source: Path, output: Path, model: str | None, batch_size: int) -> dict:
    """`meterread read SOURCE OUTPUT` in a fresh process: wall seconds, peak RSS (MiB, the process's own high-water
    mark `VmHWM`; `ru_maxrss` would carry the parent's size over the fork) and the tail of its output."""
    command = [sys.executable, "-c", NIGHT, "read", str(source), str(output), "--batch-size", str(batch_size)]
    command += ["--model", model] if model else []
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"history bench night failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "peak_rss_mb": measured["peak_rss_mb"], "stdout_tail": result.stdout[-400:]}


def bench_history(
    sizes: list[int], n: int, seed: int, model: str | None, batch_size: int, workdir: str | None, log=print
) -> dict:
    """One night of `n` photos into outputs holding each of `sizes` rows; wall and peak RSS per size and as
    ratios to the first size."""
    from meterread.data.synth import write_bucket

    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="meterread-bench-history-"))
    source = base / "night"
    if not source.exists():
        write_bucket(source, n, seed)
    meters = night_meters(source)
    points = []
    for size in sizes:
        output = base / f"output-{size}"
        shutil.rmtree(output, ignore_errors=True)
        started = time.perf_counter()
        files = fill_history(output, size, meters, seed) if size else 0
        log(f"history {size:,} rows in {files} files written and folded in {time.perf_counter() - started:.1f} s")
        night = run_night(source, output, model, batch_size)
        log(f"  night of {n} photos: {night['wall_s']:.2f} s, peak RSS {night['peak_rss_mb']:.0f} MiB")
        points.append({"history_rows": size, "files": files, **night})
        shutil.rmtree(output, ignore_errors=True)
    first = points[0]
    for point in points:
        point["wall_ratio"] = point["wall_s"] / first["wall_s"]
        point["peak_rss_ratio"] = point["peak_rss_mb"] / first["peak_rss_mb"]
    return {"kind": "history", "n": n, "points": points}


def format_history(results: dict) -> str:
    """The history bench as a table, ratios to its first size."""
    lines = [f"meterread bench --history: one night of {results['n']} photos into outputs that already hold ROWS rows"]
    lines.append(f"  {'rows':>12}  {'files':>6}  {'wall s':>7}  {'x':>5}  {'peak RSS MiB':>12}  {'x':>5}")
    for p in results["points"]:
        lines.append(
            f"  {p['history_rows']:>12,}  {p['files']:>6}  {p['wall_s']:>7.2f}  {p['wall_ratio']:>5.2f}  "
            f"{p['peak_rss_mb']:>12.0f}  {p['peak_rss_ratio']:>5.2f}"
        )
    lines.append("  bar: at 1,000,000 rows both ratios <= 1.2")
    return "\n".join(lines)


def dump(results: dict, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2))
