"""The bundling script (scripts/bundle_demo_model.py): what it records of an evaluation, how it names the earlier
bundle, and the min_confidence it writes (its whole output is checked on the real bundle in
tests/training/test_demo_model.py)."""

import json

import pytest

from tests.scripts.conftest import SCRIPTS, load_script


@pytest.fixture(scope="module")
def bundle():
    return load_script("bundle_demo_model")


def metrics(exact: float, **extra) -> dict:
    keys = ("count", "digits_exact_match", "character_error_rate", "parse_rate", "accuracy_at_coverage")
    table = [
        {"min_confidence": 0.5, "flagged_share": 0.01, "wrong_accepted_share": 0.03},
        {"min_confidence": 0.7, "flagged_share": 0.05, "wrong_accepted_share": 0.008},
        {"min_confidence": 0.9, "flagged_share": 0.12, "wrong_accepted_share": 0.002},
    ]
    base = {key: 1 for key in keys} | {"exact_match": exact, "by_meter_type": {}, "by_meter_model": {}}
    return base | {"thresholds": table, "split": "test"} | extra


def test_an_evaluation_record_keeps_the_baseline_and_says_whether_the_register_was_known(bundle, tmp_path):
    for name, extra in (("free", {}), ("known", {"known_register": True})):
        (tmp_path / f"eval-{name}").mkdir()
        body = metrics(0.8, baseline={"name": "ppocr", **metrics(0.1)}, **extra)
        (tmp_path / f"eval-{name}" / "metrics.json").write_text(json.dumps(body))
    free = bundle.evaluation_record(tmp_path, "free", "meterread strips X")
    known = bundle.evaluation_record(tmp_path, "known", "meterread strips X")
    assert (free["known_register"], known["known_register"]) == (False, True)
    assert free["data"] == "meterread strips X" and free["exact_match"] == 0.8
    assert free["baseline"]["name"] == "ppocr" and free["baseline"]["exact_match"] == 0.1


def test_the_earlier_bundle_is_named_as_the_recipe_names_its_weights(bundle, tmp_path):
    target = tmp_path / "meterread" / "assets" / "demo-model"
    record = {"command": f"meterread train r.yaml base={target}", "ingredients": [str(target), "runs/x/best"], "n": 3}
    relabelled = bundle.relabel(record, bundle.recipe_names((), target))
    assert relabelled == {
        "command": "meterread train r.yaml base=runs/ppocr-soup4/best",
        "ingredients": ["runs/ppocr-soup4/best", "runs/x/best"],
        "n": 3,
    }
    assert bundle.EARLIER_BUNDLE in (SCRIPTS.parent / "Makefile").read_text().replace("$(RUNS)", "runs")


def test_runs_made_under_other_folders_are_recorded_under_the_recipes_names(bundle, tmp_path):
    target = tmp_path / "meterread" / "assets" / "demo-model"
    record = {"command": "meterread train r.yaml base=/scratch/runs/t dataset=/scratch/data/d", "steps": [1]}
    relabelled = bundle.relabel(record, bundle.recipe_names([("/scratch/", "")], target))
    assert relabelled == {"command": "meterread train r.yaml base=runs/t dataset=data/d", "steps": [1]}
    (tmp_path / "tall").mkdir()
    restrip = {"source": "/scratch/runs/ppocr-soup4/best", "strip_before": [48, 320], "strip_after": [64, 424]}
    (tmp_path / "tall" / "restrip.json").write_text(json.dumps(restrip))
    recorded = bundle.restripped_record(str(tmp_path / "tall"), "meterread restrip A B")
    assert recorded == {"command": "meterread restrip A B", **restrip}


def test_recorded_evaluations_set_the_min_confidence_validation_recommends(bundle, tmp_path):
    (tmp_path / "meterread.json").write_text(json.dumps({"family": "ppocr", "min_confidence": 0.9}))
    (tmp_path / "provenance.json").write_text(json.dumps({"recipe": "r.yaml"}))
    evaluations = {"synthetic": {"data": "meterread synth X", **metrics(0.99)}}
    bundle.record_evaluations(tmp_path, evaluations, metrics(0.97), "the averaged checkpoint on validation")
    settings = json.loads((tmp_path / "meterread.json").read_text())
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    assert settings["min_confidence"] == 0.7  # the lowest with at most 1% of accepted readings wrong
    assert provenance["min_confidence"] == {"value": 0.7, "chosen_on": "the averaged checkpoint on validation"}
    assert provenance["heldout"]["exact_match"] == 0.99 and provenance["evaluations"] == evaluations
    assert provenance["recipe"] == "r.yaml"  # the rest of the provenance kept


def test_a_reader_bundled_to_be_joined_keeps_no_evaluations(bundle, tmp_path):
    (tmp_path / "meterread.json").write_text(json.dumps({"family": "ppocr"}))
    (tmp_path / "provenance.json").write_text(json.dumps({"recipe": "r.yaml"}))
    bundle.record_evaluations(tmp_path, {}, metrics(0.97), "the averaged checkpoint on validation")
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    assert "evaluations" not in provenance and "heldout" not in provenance
    assert json.loads((tmp_path / "meterread.json").read_text())["min_confidence"] == 0.7


def test_an_ensemble_is_bundled_with_its_members_provenance_and_the_first_ones_notice(bundle, tmp_path):
    pair = tmp_path / "runs" / "ppocr-pair" / "ensemble"
    sources = [str(tmp_path / "runs" / name) for name in ("first-reader", "second-reader")]
    for index, (recipe, minutes) in enumerate((("a.yaml", 200.0), ("b.yaml", 96.5))):
        member = pair / f"member-{index}"
        member.mkdir(parents=True)
        provenance = {"recipe": recipe, "stages": [{}] * (5 - 3 * index), "training_minutes_on_2_cpu_cores": minutes}
        (member / "provenance.json").write_text(json.dumps(provenance))
        (member / "NOTICE").write_text(f"notice {index}")
    manifest = {"model_type": "ppocr", "members": ["member-0", "member-1"], "sources": sources}
    (pair / "ensemble.json").write_text(json.dumps(manifest))
    (pair / "meterread.json").write_text(json.dumps({"crop_display": True}))
    (tmp_path / "valid.json").write_text(json.dumps(metrics(0.97, worst=[])))
    target = tmp_path / "bundle"
    relabels = [(str(tmp_path / "runs"), "runs")]
    command = f"meterread ensemble {pair} {' '.join(sources)}"
    valid = bundle.bundle_ensemble(pair, str(tmp_path / "valid.json"), command, relabels, target)
    assert valid["exact_match"] == 0.97 and "worst" not in valid  # the recorded keys only
    assert json.loads((target / "ensemble.json").read_text())["sources"] == ["runs/first-reader", "runs/second-reader"]
    provenance = json.loads((target / "provenance.json").read_text())
    assert provenance["ensemble"]["command"] == (
        "meterread ensemble runs/ppocr-pair/ensemble runs/first-reader runs/second-reader"
    )
    assert provenance["ensemble"]["members"] == [
        {"name": "member-0", "recipe": "a.yaml", "stages": 5, "training_minutes_on_2_cpu_cores": 200.0},
        {"name": "member-1", "recipe": "b.yaml", "stages": 2, "training_minutes_on_2_cpu_cores": 96.5},
    ]
    assert provenance["training_minutes_on_2_cpu_cores"] == 296.5
    assert json.loads((target / "metrics.json").read_text())["valid"] == valid
    assert (target / "NOTICE").read_text() == "notice 0"
    assert json.loads((target / "member-1" / "provenance.json").read_text())["recipe"] == "b.yaml"  # each its own
