"""The demo: sample photos -> a read (the Prefect flow under `make demo`, `flows/demo.py`; the library's
`run_read` under `meterread demo`) -> Parquet -> printed summary and accuracy, on synthetic and real pixels."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from meterread.config import DEMO_MODEL_DIR, ModelSpec, ReadConfig
from meterread.data.synth import write_bucket
from meterread.parse import parse_reading
from meterread.read import sink
from meterread.storage import resolve

REAL_SAMPLES = Path(__file__).parent / "assets" / "real-samples"


def label_for(uri: str, labels: dict[str, str]) -> str | None:
    """Label of the photo at `uri`, matching keys (`meter/time.jpg`) as path suffixes."""
    return next((label for key, label in labels.items() if uri.endswith("/" + key)), None)


def accuracy_against_labels(table, labels: dict[str, str]) -> tuple[int, int]:
    """(exact matches of the parsed reading, rows with a label). Pure."""
    hits = total = 0
    for uri, text in zip(table.column("image_uri").to_pylist(), table.column("reading_text").to_pylist()):
        label = label_for(uri, labels)
        if label is None:
            continue
        total += 1
        hits += parse_reading(text).value == parse_reading(label).value
    return hits, total


def labels_in(annotations: Path) -> dict[str, str]:
    """key -> label from a bucket's annotations.jsonl."""
    records = [json.loads(line) for line in annotations.read_text().splitlines() if line.strip()]
    return {record["image"]: record["suffix"] for record in records}


ReadBucket = Callable[[ReadConfig], dict]  # runs a read over config.source, returns its manifest


def read_with_library(config: ReadConfig) -> dict:
    """The read path without Prefect (`meterread read`)."""
    from meterread.read.runner import run_read

    return run_read(config, progress=False)


def read_and_collect(read_bucket: ReadBucket, bucket: Path, output: Path):
    """Read `bucket` into `output` with the bundled model; returns (manifest, output table sorted by URI)."""
    config = ReadConfig(
        source=str(bucket.resolve()), output=str(output.resolve()), model=ModelSpec(base=str(DEMO_MODEL_DIR))
    )
    manifest = read_bucket(config)
    fs, root = resolve(config.output)
    return manifest, sink.read_output(fs, root).sort_by("image_uri")


def run_demo(
    workdir: Path, n: int, seed: int, read_bucket: ReadBucket = read_with_library, how: str = "meterread read"
) -> None:
    bucket, output = workdir / "bucket", workdir / "output"
    shutil.rmtree(workdir, ignore_errors=True)
    samples = write_bucket(bucket, n, seed)
    print(f"1. wrote {len(samples)} sample meter photos to {bucket}/ (local folder as the bucket)")
    print(f"2. reading them ({how}) with the bundled demo model {DEMO_MODEL_DIR.name} ...")
    manifest, table = read_and_collect(read_bucket, bucket, output)
    print(f"3. wrote {table.num_rows} rows to {output}/ (run {manifest['run_id']})\n")
    labels = {sample.key: sample.label for sample in samples}
    frame = table.select(["meter_id", "captured_at", "reading_text", "confidence", "status"]).to_pandas()
    frame["true_label"] = [label_for(uri, labels) for uri in table.column("image_uri").to_pylist()]
    print(frame.head(12).to_string(index=False))
    print("\nstatus counts:", manifest["counts"])
    hits, total = accuracy_against_labels(table, labels)
    print(f"exact-match accuracy against the known labels: {hits}/{total} = {hits / max(total, 1):.1%}")
    show_real_pixels(workdir, read_bucket, how)
    print(
        "\nquery it:\n"
        f"  duckdb -c \"SELECT status, count(*) FROM read_parquet('{output}/**/*.parquet',"
        ' hive_partitioning=true) GROUP BY 1"\n'
        f"  python -c \"import pandas as pd; print(pd.read_parquet('{output}').head())\""
    )


def show_real_pixels(workdir: Path, read_bucket: ReadBucket, how: str) -> None:
    """Read the bundled real-pixel samples (meter models held out of training) and print each set's accuracy."""
    from meterread.config import ModelSpec
    from meterread.training.evaluation import evaluate_split

    print(f"\n4. real pixels: digit crops of meter models the model never saw ({REAL_SAMPLES / 'NOTICE'})")
    photos = REAL_SAMPLES / "photos"
    manifest, table = read_and_collect(read_bucket, photos, workdir / "real-output")
    hits, total = accuracy_against_labels(table, labels_in(photos / "annotations.jsonl"))
    print(f"   real-crop photos, {how}: {hits}/{total} = {hits / max(total, 1):.1%} exact, {manifest['counts']}")
    spec = ModelSpec(base=str(DEMO_MODEL_DIR))
    metrics = evaluate_split(spec, str(REAL_SAMPLES / "strips"), "heldout", progress=False)
    right = round(metrics["exact_match"] * metrics["count"])
    print(f"   real-crop strips, meterread eval: {right}/{metrics['count']} = {metrics['exact_match']:.1%} exact")
