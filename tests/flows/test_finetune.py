"""Fine-tune flow: train -> score on test -> promotion gate -> registry pointer + artifact."""

import json

import pytest
import yaml

from meterread.data.synth import write_dataset
from meterread.registry import read_current

pytestmark = pytest.mark.prefect


def test_finetune_promotes_then_refuses_without_margin(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.finetune import finetune

    dataset = tmp_path / "dataset"
    write_dataset(dataset, {"train": 8, "valid": 4, "test": 4}, seed=21, size=(320, 240))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "family": "paligemma",
                "init_tiny": {"image_size": 64, "patch_size": 16},
                "dataset": str(dataset),
                "output": str(tmp_path / "run"),
                "strategy": "lora",
                "lr": 1e-3,
                "batch_size": 8,
                "epochs": 1,
            }
        )
    )
    registry = str(tmp_path / "registry")

    first = finetune(recipe=str(recipe), registry_url=registry)
    assert first["decision"]["promote"] is True and "first promotion" in first["decision"]["reason"]
    assert read_current(registry)["version"] == first["pointer"]["version"]

    second = finetune(recipe=str(recipe), registry_url=registry, overrides=["seed=4"], margin=1.5)
    assert second["decision"]["promote"] is False
    assert second["decision"]["current_score"] == pytest.approx(first["candidate"]["exact_match"])
    assert read_current(registry)["version"] == first["pointer"]["version"]  # unchanged

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["promotion-decision"]))
        )
    decisions = sorted(json.loads(a.data)[0]["promote"] for a in artifacts)
    assert decisions == [False, True]
