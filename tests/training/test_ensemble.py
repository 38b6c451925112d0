"""`meterread ensemble`: ppocr checkpoints copied into one directory that reads as one model, and its refusals."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meterread.cli import app
from meterread.config import ModelSpec, TrainConfig
from meterread.models.base import source_digest
from meterread.models.ppocr import build_tiny
from meterread.models.registry import load_reader
from meterread.settings import TrainConfigError
from meterread.training.ensemble import build_ensemble
from meterread.training.registry import publish, resolve_spec
from meterread.training.restrip import restrip_checkpoint
from meterread.training.soup import average_checkpoints


@pytest.fixture
def members(tmp_path):
    return [build_tiny(tmp_path / "a", seed=1), build_tiny(tmp_path / "b", seed=2)]


def test_the_command_copies_each_member_and_records_where_it_came_from(tmp_path, members):
    out = tmp_path / "ensemble"
    command = ["ensemble", str(out), *map(str, members), "--min-confidence", "0.8"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "ensemble.json").read_text())
    assert manifest == {
        "model_type": "ppocr",
        "members": ["member-0", "member-1"],
        "sources": [str(m.resolve()) for m in members],
    }
    for name, source in zip(manifest["members"], members):
        assert (out / name / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    settings = json.loads((out / "meterread.json").read_text())
    assert settings == {"crop_display": False, "display_rows": 2, "local_contrast": False, "min_confidence": 0.8}


def test_no_members_threshold_carries_over(tmp_path, members):
    settings = members[0] / "meterread.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "min_confidence": 0.9}))
    out = build_ensemble(tmp_path / "ensemble", members)
    assert "min_confidence" not in json.loads((out / "meterread.json").read_text())


def test_what_cannot_read_as_one_is_refused_before_anything_is_written(tmp_path, members, tiny_paligemma):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="two or more checkpoints, got 1"):
        build_ensemble(out, members[:1])
    with pytest.raises(ValueError, match="not a full ppocr checkpoint"):
        build_ensemble(out, [members[0], tiny_paligemma])
    with pytest.raises(ValueError, match="not a full ppocr checkpoint"):
        build_ensemble(out, [members[0], tmp_path / "nothing"])
    with pytest.raises(ValueError, match="is a probability"):
        build_ensemble(out, members, min_confidence=90)
    with pytest.raises(ValueError, match="inside a member checkpoint"):
        build_ensemble(members[0] / "ensemble", members)
    nested = build_ensemble(tmp_path / "nested", members)
    with pytest.raises(ValueError, match="ensemble itself"):
        build_ensemble(out, [members[0], nested])
    settings = members[1] / "meterread.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "crop_display": True}))
    with pytest.raises(ValueError, match="prepare photos differently"):
        build_ensemble(out, members)
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "crop_display": False}))
    config = members[1] / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "vocab": "0123456789"}))
    with pytest.raises(ValueError, match="different vocabularies"):
        build_ensemble(out, members)
    assert not out.exists()
    with pytest.raises(ValueError, match="not empty"):
        build_ensemble(nested, members[:1] * 2)
    result = CliRunner().invoke(app, ["ensemble", str(out), str(members[0])])
    assert result.exit_code == 2 and "two or more" in result.output and not out.exists()


def test_an_ensemble_is_not_trained_averaged_or_restripped(tmp_path, members):
    ensemble = build_ensemble(tmp_path / "ensemble", members)
    config = TrainConfig(family="ppocr", base=str(ensemble), dataset=str(tmp_path), output=str(tmp_path / "run"))
    with pytest.raises(TrainConfigError, match="train one of its members"):
        config.validate()
    with pytest.raises(ValueError, match="ensemble of checkpoints: average one of its members"):
        average_checkpoints(tmp_path / "soup", [members[0], ensemble])
    with pytest.raises(ValueError, match="ensemble of checkpoints: restrip one of its members"):
        restrip_checkpoint(ensemble, tmp_path / "tall", 256, 64)
    assert not (tmp_path / "soup").exists() and not (tmp_path / "tall").exists()


def test_an_ensemble_is_published_whole_and_read_through_a_local_or_s3_registry(tmp_path, members, s3_bucket):
    ensemble = build_ensemble(tmp_path / "ensemble", members, min_confidence=0.7)
    fs, bucket = s3_bucket
    for registry in (str(tmp_path / "registry"), f"s3://{bucket}/ensembles"):
        pointer = publish(registry, ensemble, 0.9)
        assert (pointer["family"], pointer["strategy"]) == ("ppocr", "ensemble")
        resolved = resolve_spec(ModelSpec(base=f"registry://{registry}", device="cpu"))
        assert (Path(resolved.base) / "member-1" / "model.safetensors").is_file()  # fetched, members and all
        reader = load_reader(resolved)
        assert len(reader.members) == 2 and reader.min_confidence == 0.7
        for member in ("member-0", "member-1"):  # the same members as the folder published
            assert source_digest(str(Path(resolved.base) / member)) == source_digest(str(ensemble / member))
    card = next((tmp_path / "registry" / "versions").iterdir()) / "README.md"
    assert "| family | ppocr |" in card.read_text() and "| strategy | ensemble (whole model) |" in card.read_text()


def test_a_run_folders_trainer_state_stays_behind(tmp_path, members):
    (members[0] / "trainer_state.pt").write_bytes(b"optimizer moments")
    ensemble = build_ensemble(tmp_path / "ensemble", members)
    assert not (ensemble / "member-0" / "trainer_state.pt").exists()
    assert (ensemble / "member-0" / "config.json").is_file() and not (tmp_path / "ensemble.partial").exists()
