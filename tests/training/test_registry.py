"""Model registry: references (`registry://URL`) resolved to the current version, the promotion gate's floor, the
version record and model card that `publish` writes, and a read run that follows the registry."""

import json
import re
import shutil
from pathlib import Path

import pytest

from meterread.config import ConfigError, ModelSpec, ReadConfig
from meterread.data.synth import write_bucket
from meterread.models.base import ModelLoadError
from meterread.models.references import model_reference, parse_reference
from meterread.read import sink
from meterread.read.runner import run_read
from meterread.storage import resolve
from meterread.training.registry import (
    MIN_PROMOTION_FLOOR,
    decide,
    model_card,
    promotion_floor,
    publish,
    read_current,
    resolve_spec,
    run_model_fields,
    shard_model_settings,
    version_spec,
)

VERSION = "v20261201T020000123456Z"
FULL = {"family": "paligemma", "strategy": "full"}  # what a tiny model's folder cannot say of itself


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("registry://s3://meter-models/registry", ("s3://meter-models/registry", None)),
        ("registry://s3://meter-models/registry/", ("s3://meter-models/registry", None)),
        ("registry:///srv/models/registry", ("/srv/models/registry", None)),
        (f"registry://s3://meter-models/registry@{VERSION}", ("s3://meter-models/registry", VERSION)),
        ("registry://s3://meter-models/a@b", ("s3://meter-models/a@b", None)),  # not a version name: part of the URL
        ("google/paligemma2-3b-pt-224", None),
        ("s3://meter-models/adapters/v3", None),
        (None, None),
    ],
)
def test_model_references_parse(value, parsed):
    assert parse_reference(value) == parsed
    if parsed:
        assert parse_reference(model_reference(*parsed)) == parsed


def test_a_reference_without_a_registry_is_refused():
    with pytest.raises(ValueError, match="names no registry"):
        parse_reference("registry://")


def test_a_read_config_with_a_reference_validates_without_touching_the_registry(tmp_path):
    absent = tmp_path / "no-registry-here"
    values = {"source": str(tmp_path / "photos"), "output": str(tmp_path / "out")}
    config = ReadConfig.from_mapping({**values, "model": {"base": f"registry://{absent}"}}).validate()
    assert config.model.base == f"registry://{absent}" and not absent.exists()
    for model, message in [
        ({"base": "registry://"}, "names no registry"),
        ({"base": f"registry://{absent}", "adapter": "s3://a/b"}, "names its own adapter"),
        ({"base": "x", "adapter": f"registry://{absent}"}, "as base, not as adapter"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ReadConfig.from_mapping({**values, "model": model}).validate()


@pytest.mark.parametrize(
    ("candidate", "current", "margin", "floor", "promote", "reason"),
    [
        (0.5, None, 0.0, None, False, "below the floor 0.9000"),  # even a first promotion
        (0.0, None, 0.0, None, False, "below the floor"),
        (0.92, None, 0.0, None, True, "first promotion"),
        (0.95, 0.97, 0.0, None, False, "below the floor 0.9700 .*current model's score"),
        (0.95, 0.97, -0.05, None, False, "below the floor 0.9700"),  # a negative margin cannot undercut it
        (0.85, 0.2, 0.0, 0.5, False, "below the floor 0.9000"),  # a floor given below 0.9 is 0.9
        (0.93, 0.91, 0.01, 0.95, False, "below the floor 0.9500 .*given floor"),
        (0.975, 0.97, 0.005, None, True, "0.9750 >= current 0.9700 \\+ margin 0.005"),
        (0.972, 0.97, 0.005, None, False, "< current 0.9700 \\+ margin 0.005"),
        (None, 0.95, 0.0, None, False, "no score"),
    ],
)
def test_the_gate_has_an_absolute_floor(candidate, current, margin, floor, promote, reason):
    decision = decide(candidate, current, margin, floor)
    assert decision.promote is promote
    assert re.search(reason, decision.reason), decision.reason
    assert decision.floor == promotion_floor(current, floor) >= MIN_PROMOTION_FLOOR


def test_a_floor_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="floor must be within"):
        promotion_floor(None, 90)


def test_a_version_reads_as_base_plus_adapter_or_as_a_whole_model():
    path = f"s3://reg/versions/{VERSION}"
    lora = {"version": VERSION, "path": path, "family": "florence2", "strategy": "lora", "base": "hub/base"}
    spec = version_spec(ModelSpec(device="cpu"), {**lora, "pattern": "5.1"}, "s3://reg")
    assert (spec.family, spec.base, spec.adapter, spec.pattern, spec.device) == (
        "florence2",
        "hub/base",
        path,
        "5.1",
        "cpu",
    )
    assert spec.reference == f"registry://s3://reg@{VERSION}"
    assert version_spec(ModelSpec(pattern="6.1"), {**lora, "pattern": "5.1"}, "s3://reg").pattern == "6.1"
    free = version_spec(ModelSpec(constrained=False), {**lora, "pattern": "5.1"}, "s3://reg")
    assert free.pattern is None and free.validate()  # a version's pattern does not refuse a free read
    whole = version_spec(ModelSpec(), {**lora, "strategy": "full", "base": None}, "s3://reg")
    assert (whole.base, whole.adapter) == (path, None)
    with pytest.raises(ModelLoadError, match="s3://reg: version v1 records no family, strategy"):
        version_spec(ModelSpec(), {"version": "v1", "path": path}, "s3://reg")
    with pytest.raises(ModelLoadError, match="records no base"):
        version_spec(ModelSpec(), {**lora, "base": None}, "s3://reg")


def test_an_empty_registry_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match=f"model registry {tmp_path} has no current model"):
        resolve_spec(ModelSpec(base=f"registry://{tmp_path}"))
    with pytest.raises(ModelLoadError, match=f"has no version {VERSION}"):
        resolve_spec(ModelSpec(base=f"registry://{tmp_path}@{VERSION}"))


def test_a_fixed_model_is_left_as_it_is(tiny_paligemma):
    spec = ModelSpec(base=tiny_paligemma)
    assert resolve_spec(spec) is spec and run_model_fields(spec) == {"model_reference": None, "model_version": None}
    assert shard_model_settings(spec) == {}


def test_a_local_registry_resolves_to_its_current_version_and_a_pin_to_its_own(tmp_path, tiny_paligemma):
    folder = tmp_path / "registry"
    first = publish(str(folder), tiny_paligemma, 0.95, record=FULL)
    resolved = resolve_spec(ModelSpec(base=f"registry://{folder}", device="cpu"))
    assert resolved.base == str(folder / "versions" / first["version"]) and resolved.adapter is None
    assert resolved.reference == f"registry://{folder}@{first['version']}" and resolved.device == "cpu"
    assert run_model_fields(resolved) == {"model_reference": f"registry://{folder}", "model_version": first["version"]}

    second = publish(str(folder), tiny_paligemma, 0.96, record=FULL)
    assert resolve_spec(ModelSpec(base=f"registry://{folder}")).base.endswith(second["version"])
    pinned = shard_model_settings(resolved)["model"]
    assert pinned["base"] == resolved.reference and pinned["reference"] is None
    again = resolve_spec(ModelSpec(**pinned))  # a shard resolving the night's pin after a promotion
    assert again == resolved


def test_an_s3_registry_fetches_a_whole_model_and_points_a_lora_version_at_its_folder(
    s3_bucket, tiny_paligemma, tmp_path
):
    fs, bucket = s3_bucket
    url = f"s3://{bucket}/registry"
    whole = publish(url, tiny_paligemma, 0.95, record=FULL)
    assert json.loads(fs.cat_file(f"{bucket}/registry/current.json"))["strategy"] == "full"
    resolved = resolve_spec(ModelSpec(base=f"registry://{url}"))
    assert "://" not in resolved.base and (Path(resolved.base) / "config.json").is_file()  # fetched
    assert resolved.reference == f"registry://{url}@{whole['version']}"

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    lora = publish(url, adapter, 0.96, record={"family": "paligemma", "strategy": "lora", "base": tiny_paligemma})
    resolved = resolve_spec(ModelSpec(base=f"registry://{url}"))
    assert (resolved.base, resolved.adapter) == (tiny_paligemma, f"s3://{bucket}/registry/versions/{lora['version']}")


def test_publish_writes_a_version_record_and_a_model_card(tmp_path, tiny_paligemma):
    checkpoint = tmp_path / "best"
    shutil.copytree(tiny_paligemma, checkpoint)
    (checkpoint / "README.md").write_text("peft's generic card")
    (checkpoint / "meterread.json").write_text(json.dumps({"crop_display": True, "min_confidence": 0.72}))
    (checkpoint / "dataset_manifest.json").write_text(json.dumps({"digest": "abc123"}))
    recipe = {"family": "paligemma", "strategy": "full", "base": "", "dataset": "/data/x", "lr": 3e-4, "epochs": 2}
    (checkpoint / "train_config.json").write_text(json.dumps({**recipe, "batch_size": 8, "grad_accum": 4}))
    (checkpoint / "metrics.json").write_text(json.dumps({"step": 40, "epoch": 2, "valid": {"exact_match": 0.93}}))
    (checkpoint / "trainer_state.pt").write_bytes(b"not copied")
    evaluations = {
        "test": {"dataset": "/data/x", "split": "test", "candidate": {"count": 40, "exact_match": 0.95}, "current": {}},
        "real": {"dataset": "/data/real", "split": "heldout", "missing": "no labelled samples in /data/real/heldout"},
    }
    decision = decide(0.95, None, 0.0)
    folder = tmp_path / "registry"
    pointer = publish(
        str(folder), checkpoint, 0.95, record={"base": "/runs/init"}, evaluations=evaluations, decision=decision
    )

    version = folder / "versions" / pointer["version"]
    assert not (version / "trainer_state.pt").exists()
    assert {k: pointer[k] for k in ("family", "strategy", "base")} == {
        "family": "paligemma",
        "strategy": "full",
        "base": "/runs/init",
    }
    record = json.loads((version / "version.json").read_text())
    assert record["min_confidence"] == 0.72 and record["dataset_manifest"] == "abc123"
    assert record["evaluations"] == evaluations and record["decision"]["promote"] is True
    assert read_current(str(folder)) == pointer
    card = (version / "README.md").read_text()
    assert card == model_card(record) and "peft's generic card" not in card
    for text in (
        f"# Meter reader {pointer['version']}",
        "| base model | /runs/init |",
        "| strategy | full (whole model) |",
        "| recommended `min_confidence` | 0.72 (`meterread.json`) |",
        "Dataset `/data/x`; manifest digest `abc123`",
        "| test | `/data/x` test | 40 | 95.00% |",
        "| real | `/data/real` heldout | not present: no labelled samples",
        "| lr | 0.0003 |",
        "| effective batch | 32 |",
        "at step 40, epoch 2: validation exact match 93.00%",
        "Promoted: no current model: first promotion",
        f"`registry://{folder}@{pointer['version']}` (this version only)",
    ):
        assert text in card, text


def test_a_card_says_when_no_threshold_was_recommended():
    card = model_card({"version": "v1", "strategy": "lora", "base": "hub/base", "recipe": {"strategy": "lora"}})
    assert "none recorded: runs use 0.5 unless set" in card and "LoRA adapter on the base" in card
    assert "Published without a gate decision." in card


def test_a_read_run_follows_the_registry_and_records_the_version(tmp_path, tiny_paligemma):
    write_bucket(tmp_path / "bucket", 4, seed=5)
    folder = tmp_path / "registry"
    values = {"source": str(tmp_path / "bucket"), "output": str(tmp_path / "out"), "batch_size": 4}
    config = ReadConfig.from_mapping({**values, "model": {"base": f"registry://{folder}", "device": "cpu"}})
    with pytest.raises(ModelLoadError, match=f"model registry {folder} has no current model"):
        run_read(config.validate(), progress=False)

    first = publish(str(folder), tiny_paligemma, 0.95, record=FULL)
    manifest = run_read(config.validate(), progress=False)
    assert manifest["model_reference"] == f"registry://{folder}"
    assert manifest["model_version"] == first["version"]
    assert manifest["model_id"] == str(folder / "versions" / first["version"])
    rows = sink.read_output(*resolve(str(tmp_path / "out")))
    assert set(rows.column("model_id").to_pylist()) == {manifest["model_id"]} and rows.num_rows == 4
