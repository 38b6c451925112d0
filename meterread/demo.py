"""`make demo`: sample photos -> nightly flow (Prefect) -> Parquet -> printed summary and accuracy."""

from __future__ import annotations

import shutil
from pathlib import Path

from meterread import sink
from meterread.config import DEMO_MODEL_DIR
from meterread.parse import parse_reading
from meterread.storage import resolve
from meterread.synth import write_bucket


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


def run_demo(workdir: Path, n: int, seed: int) -> None:
    from flows.nightly_read import nightly_read

    bucket, output = workdir / "bucket", workdir / "output"
    shutil.rmtree(workdir, ignore_errors=True)
    samples = write_bucket(bucket, n, seed)
    print(f"1. wrote {len(samples)} sample meter photos to {bucket}/ (local folder as the bucket)")
    print(f"2. running the nightly-read flow with the bundled demo model {DEMO_MODEL_DIR.name} ...")
    manifest = nightly_read(
        source=str(bucket.resolve()),
        output=str(output.resolve()),
        model={"family": "paligemma", "base": str(DEMO_MODEL_DIR)},
    )
    fs, root = resolve(str(output.resolve()))
    table = sink.read_output(fs, root)
    print(f"3. wrote {table.num_rows} rows to {output}/ (run {manifest['run_id']})\n")
    labels = {sample.key: sample.label for sample in samples}
    table = table.sort_by("image_uri")
    frame = table.select(["meter_id", "captured_at", "reading_text", "confidence", "status"]).to_pandas()
    frame["true_label"] = [label_for(uri, labels) for uri in table.column("image_uri").to_pylist()]
    print(frame.head(12).to_string(index=False))
    print("\nstatus counts:", manifest["counts"])
    hits, total = accuracy_against_labels(table, labels)
    print(f"exact-match accuracy against the known labels: {hits}/{total} = {hits / max(total, 1):.1%}")
    print(
        "\nquery it:\n"
        f"  duckdb -c \"SELECT status, count(*) FROM read_parquet('{output}/**/*.parquet',"
        ' hive_partitioning=true) GROUP BY 1"\n'
        f"  python -c \"import pandas as pd; print(pd.read_parquet('{output}').head())\""
    )
