"""Security promises: safetensors only, no remote code, credentials never written."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from meterread.config import ReadConfig
from meterread.models.base import ModelSpec, load_reader
from meterread.pipeline import run_read
from meterread.synth import write_bucket

ROOT = Path(__file__).resolve().parents[1]


def test_pickled_weights_are_refused(tiny_paligemma, tmp_path):
    from transformers import PaliGemmaForConditionalGeneration

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_paligemma, pickled)
    (pickled / "model.safetensors").unlink()
    model = PaliGemmaForConditionalGeneration.from_pretrained(tiny_paligemma)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(OSError):
        load_reader(ModelSpec(base=str(pickled), device="cpu"))


def test_no_remote_code_anywhere():
    sources = list((ROOT / "meterread").rglob("*.py")) + list((ROOT / "flows").rglob("*.py"))
    assert sources
    for path in sources:
        assert "trust_remote_code=" not in path.read_text(), path  # never passed, whatever its value


def test_credentials_never_reach_outputs_or_logs(tmp_path, tiny_paligemma, s3_bucket, caplog):
    fs, bucket = s3_bucket
    write_bucket(tmp_path / "local", 3, seed=31)
    fs.put(str(tmp_path / "local"), f"{bucket}/in", recursive=True)
    config = ReadConfig(
        source=f"s3://{bucket}/in", output=f"s3://{bucket}/out", model=ModelSpec(base=tiny_paligemma, device="cpu")
    ).validate()
    with caplog.at_level("DEBUG"):
        manifest = run_read(config, progress=False)
    secret = "testing-secret"  # the moto fixture's AWS_SECRET_ACCESS_KEY
    assert manifest["processed"] == 3
    assert secret not in json.dumps(manifest, default=str) and secret not in caplog.text
    for path in fs.find(f"{bucket}/out"):
        assert secret.encode() not in fs.cat_file(path), path
