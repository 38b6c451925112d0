"""The whole correction loop on the moto S3 server with a tiny model: night 1 reads through the registry, its flagged
photos are exported for review, corrected and imported, the corrections become a dataset, the finetune flow trains
on it and the gate promotes the candidate, and night 2 reads with the new version while the tables show the
corrected readings of night 1."""

import csv
import io
import json

import pytest
import yaml
from typer.testing import CliRunner

from meterread.cli import app
from meterread.config import ReadConfig
from meterread.storage import resolve
from meterread.tables.store import read_table
from meterread.training import registry
from tests.factories import meter_jpeg

pytestmark = [pytest.mark.prefect, pytest.mark.slow]
LABEL = "01234.5"
runner = CliRunner()


def put_night(fs, bucket: str, day: int, count: int) -> list[str]:
    """`count` photos of one register reading, one per meter, captured on 2026-02-`day`."""
    photo = meter_jpeg(LABEL, seed=7)
    keys = [f"photos/MTR-{index:03d}/202602{day:02d}T120000.jpg" for index in range(count)]
    for key in keys:
        fs.pipe_file(f"{bucket}/{key}", photo)
    return [f"s3://{bucket}/{key}" for key in keys]


def cli(*args: str) -> dict:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def corrected_csv(exported: str, reviewer: str) -> str:
    """The exported review CSV with every row corrected to LABEL by `reviewer`."""
    rows = list(csv.DictReader(io.StringIO(exported)))
    for row in rows:
        row.update(corrected_reading=LABEL, reviewer=reviewer)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_flagged_readings_corrected_train_the_model_the_next_night_reads(
    prefect_harness, s3_bucket, tiny_paligemma, tmp_path
):
    from flows.finetune import finetune
    from flows.nightly_read import nightly_read

    fs, bucket = s3_bucket
    registry_url, output = f"s3://{bucket}/registry", f"s3://{bucket}/readings"
    first = registry.publish(registry_url, tiny_paligemma, 0.0, record={"family": "paligemma", "strategy": "full"})
    model = {"family": "paligemma", "base": f"registry://{registry_url}", "device": "cpu"}

    # night 1: the random tiny model reads nothing right; (nearly) every photo is flagged
    put_night(fs, bucket, day=1, count=24)
    manifest = nightly_read(ReadConfig(source=f"s3://{bucket}/photos", output=output, model=model, batch_size=8))
    assert manifest["model_version"] == first["version"] and manifest["processed"] == 24
    queued = read_table(output, "review_queue").column("image_uri").to_pylist()
    assert len(queued) >= 20

    # review: export the queue, a reviewer corrects every row, import
    review = tmp_path / "review"
    assert cli("review", "export", output, str(review))["queued"] == len(queued)
    (review / "corrected.csv").write_text(corrected_csv((review / "review.csv").read_text(), "ana"))
    assert cli("review", "import", output, str(review / "corrected.csv"))["corrections"] == len(queued)

    # the corrections become a dataset, the finetune flow trains on it and the gate promotes
    dataset = tmp_path / "dataset"
    counts = cli("review", "dataset", output, str(dataset))["counts"]
    assert counts["test"] >= 1 and sum(counts.values()) == len(queued)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "family": "paligemma",
                "base": tiny_paligemma,
                "dataset": str(dataset),
                "output": str(tmp_path / "run"),
                "strategy": "full",
                "lr": 3e-3,
                "batch_size": 8,
                "epochs": 25,
                "eval_batch_size": 8,
                "seed": 1,
            }
        )
    )
    result = finetune(recipe=str(recipe), registry_url=registry_url)
    assert result["decision"]["promote"] is True, result["decision"]
    assert result["candidate"]["exact_match"] >= registry.MIN_PROMOTION_FLOOR
    promoted = registry.read_current(registry_url)["version"]
    assert promoted != first["version"]

    # night 2 resolves the new version: new fingerprint in its rows, the reading right (a new model reads every
    # listed photo again: the ledger keys on the model fingerprint)
    night_two = put_night(fs, bucket, day=9, count=2)
    second = nightly_read(ReadConfig(source=f"s3://{bucket}/photos", output=output, model=model, batch_size=8))
    assert second["model_version"] == promoted and second["processed"] == 26
    assert second["model_fingerprint"] != manifest["model_fingerprint"]
    current = {row["image_uri"]: row for row in read_table(output, "readings_current").to_pylist()}
    assert all(current[uri]["model_fingerprint"] == second["model_fingerprint"] for uri in night_two)
    assert [current[uri]["reading_text"] for uri in night_two] == [LABEL, LABEL]

    # and the tables show night 1's corrected readings, from the reviewer (the correction still applies: same bytes)
    assert all(str(current[uri]["reading"]) == "1234.500000" for uri in queued)
    assert {current[uri]["corrected_by"] for uri in queued} == {"ana"}
    assert all(current[uri]["status"] == "accepted" for uri in queued)
    fs_out, root = resolve(output)
    assert fs_out.exists(f"{root}/_corrections")
