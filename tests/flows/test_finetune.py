"""Fine-tune flow: train -> score candidate and current model on the same sets -> promotion gate (absolute floor)
-> registry pointer, version record, model card + artifacts."""

import json

import pytest
import yaml

from meterread.data.synth import write_dataset
from meterread.training import registry
from meterread.training.registry import read_current

pytestmark = pytest.mark.prefect


@pytest.fixture
def recipe(tmp_path):
    dataset = tmp_path / "dataset"
    write_dataset(dataset, {"train": 8, "valid": 4, "test": 4}, seed=21, size=(320, 240))
    path = tmp_path / "recipe.yaml"
    path.write_text(
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
    return str(path)


def artifact_tables(key: str) -> list[list[dict]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return [json.loads(a.data) for a in artifacts]


def test_a_tiny_candidate_is_refused_by_the_floor_even_as_first_promotion(prefect_harness, recipe, tmp_path):
    from flows.finetune import finetune

    folder = tmp_path / "registry"
    result = finetune(recipe=recipe, registry_url=str(folder))
    assert result["candidate"]["exact_match"] < registry.MIN_PROMOTION_FLOOR  # a one-epoch tiny model
    decision = result["decision"]
    assert decision["promote"] is False and "below the floor 0.9000" in decision["reason"]
    assert decision["floor"] == registry.MIN_PROMOTION_FLOOR and decision["current_score"] is None
    assert read_current(str(folder)) is None and not (folder / "versions").exists()  # nothing reaches production


def test_finetune_promotes_then_refuses_without_margin(prefect_harness, recipe, tmp_path, monkeypatch):
    from flows.finetune import finetune

    monkeypatch.setattr(registry, "MIN_PROMOTION_FLOOR", 0.0)  # tiny models read badly: the gate's logic, not its bar
    folder = tmp_path / "registry"
    sets = [f"validation:{tmp_path / 'dataset'}:valid", f"absent:{tmp_path / 'nowhere'}:test"]

    first = finetune(recipe=recipe, registry_url=str(folder), eval_sets=sets)
    assert first["decision"]["promote"] is True and "first promotion" in first["decision"]["reason"]
    pointer = read_current(str(folder))
    assert pointer["version"] == first["pointer"]["version"]
    assert (pointer["strategy"], pointer["base"]) == ("lora", first["train"]["base"])
    evaluations = first["evaluations"]
    assert list(evaluations) == ["test", "validation", "absent"]
    assert evaluations["test"]["candidate"]["exact_match"] == first["candidate"]["exact_match"]
    assert evaluations["validation"]["candidate"]["count"] == 4 and evaluations["validation"]["current"] is None
    assert "no labelled samples" in evaluations["absent"]["missing"]
    version = folder / "versions" / pointer["version"]
    assert json.loads((version / "version.json").read_text())["evaluations"] == evaluations
    card = (version / "README.md").read_text()
    assert f"| base model | {first['train']['base']} |" in card and "| validation | " in card
    assert "| absent | " in card and "not present" in card and "Promoted: no current model" in card

    second = finetune(recipe=recipe, registry_url=str(folder), overrides=["seed=4"], margin=1.5, eval_sets=sets[:1])
    assert second["decision"]["promote"] is False and "+ margin 1.5" in second["decision"]["reason"]
    assert second["decision"]["current_score"] == pytest.approx(first["candidate"]["exact_match"])
    current_on_valid = second["evaluations"]["validation"]["current"]["exact_match"]
    assert current_on_valid == pytest.approx(first["evaluations"]["validation"]["candidate"]["exact_match"])
    assert read_current(str(folder))["version"] == first["pointer"]["version"]  # unchanged

    decisions = [table[0]["promote"] for table in artifact_tables("promotion-decision")]
    assert decisions.count(True) == 1 and decisions.count(False) >= 1
    per_set = [row for table in artifact_tables("promotion-evaluations") for row in table]
    assert any(row["set"] == "absent" and row["missing"] for row in per_set)


def test_only_a_missing_candidate_set_is_recorded_as_missing(tmp_path, tiny_paligemma):
    """The current model is scored where the candidate was; a FileNotFoundError there (a version whose weights are
    gone) fails the flow instead of making the gate treat the night as a first promotion."""
    from flows.finetune import EvalSet, score_set
    from meterread.config import ModelSpec

    spec = ModelSpec(base=tiny_paligemma, device="cpu")
    absent = EvalSet("absent", str(tmp_path / "no-such-dataset"), "test")
    assert "missing" in score_set.fn(spec, absent, "candidate", str(tmp_path))
    with pytest.raises(FileNotFoundError):
        score_set.fn(spec, absent, "current", str(tmp_path))
