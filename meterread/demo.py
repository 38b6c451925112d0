"""`make demo`: sample photos -> nightly flow (Prefect) -> Parquet -> printed summary and accuracy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from meterread.config import DEMO_MODEL_DIR
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


def read_with_flow(bucket: Path, output: Path):
    """Run the nightly-read flow over `bucket` with the bundled model; returns (manifest, output table by URI)."""
    from flows.nightly_read import nightly_read

    manifest = nightly_read(
        source=str(bucket.resolve()),
        output=str(output.resolve()),
        model={"family": "paligemma", "base": str(DEMO_MODEL_DIR)},
    )
    fs, root = resolve(str(output.resolve()))
    return manifest, sink.read_output(fs, root).sort_by("image_uri")


def run_demo(workdir: Path, n: int, seed: int) -> None:
    bucket, output = workdir / "bucket", workdir / "output"
    shutil.rmtree(workdir, ignore_errors=True)
    samples = write_bucket(bucket, n, seed)
    print(f"1. wrote {len(samples)} sample meter photos to {bucket}/ (local folder as the bucket)")
    print(f"2. running the nightly-read flow with the bundled demo model {DEMO_MODEL_DIR.name} ...")
    manifest, table = read_with_flow(bucket, output)
    print(f"3. wrote {table.num_rows} rows to {output}/ (run {manifest['run_id']})\n")
    labels = {sample.key: sample.label for sample in samples}
    frame = table.select(["meter_id", "captured_at", "reading_text", "confidence", "status"]).to_pandas()
    frame["true_label"] = [label_for(uri, labels) for uri in table.column("image_uri").to_pylist()]
    print(frame.head(12).to_string(index=False))
    print("\nstatus counts:", manifest["counts"])
    hits, total = accuracy_against_labels(table, labels)
    print(f"exact-match accuracy against the known labels: {hits}/{total} = {hits / max(total, 1):.1%}")
    show_real_pixels(workdir)
    print(
        "\nquery it:\n"
        f"  duckdb -c \"SELECT status, count(*) FROM read_parquet('{output}/**/*.parquet',"
        ' hive_partitioning=true) GROUP BY 1"\n'
        f"  python -c \"import pandas as pd; print(pd.read_parquet('{output}').head())\""
    )


def show_real_pixels(workdir: Path) -> None:
    """Read the bundled real-pixel samples (meter models held out of training) and print each set's accuracy."""
    from meterread.models.base import ModelSpec
    from meterread.training.evaluation import evaluate_split

    print(f"\n4. real pixels: digit crops of meter models the model never saw ({REAL_SAMPLES / 'NOTICE'})")
    photos = REAL_SAMPLES / "photos"
    manifest, table = read_with_flow(photos, workdir / "real-output")
    hits, total = accuracy_against_labels(table, labels_in(photos / "annotations.jsonl"))
    print(f"   real-crop photos, nightly flow: {hits}/{total} = {hits / max(total, 1):.1%} exact, {manifest['counts']}")
    spec = ModelSpec(family="paligemma", base=str(DEMO_MODEL_DIR))
    metrics = evaluate_split(spec, str(REAL_SAMPLES / "strips"), "heldout", progress=False)
    right = round(metrics["exact_match"] * metrics["count"])
    print(f"   real-crop strips, meterread eval: {right}/{metrics['count']} = {metrics['exact_match']:.1%} exact")
