"""Security promises: safetensors only, no remote code, credentials never written."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from meterread.config import ModelSpec, ReadConfig
from meterread.data.synth import write_bucket
from meterread.models.registry import load_reader
from meterread.read.runner import run_read

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


class _Planted:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_resume_refuses_a_planted_pickle(tmp_path):
    from meterread.training.checkpoints import load_trainer_state

    marker = tmp_path / "pwned"
    torch.save({"step": 3, "payload": _Planted(marker)}, tmp_path / "trainer_state.pt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_trainer_state(tmp_path / "trainer_state.pt")
    assert not marker.exists()
    torch.save({"step": 3, "optimizer": {"state": {}}, "rng": torch.get_rng_state()}, tmp_path / "ok.pt")
    assert load_trainer_state(tmp_path / "ok.pt")["step"] == 3  # what training saves still loads


def test_fingerprint_sees_a_change_in_the_middle_of_the_weights(tmp_path, monkeypatch):
    from meterread.config import DEMO_MODEL_DIR
    from meterread.models.base import source_digest

    monkeypatch.setenv("METERREAD_CACHE", str(tmp_path / "cache"))
    changed = tmp_path / "model"
    shutil.copytree(DEMO_MODEL_DIR, changed)
    weights = changed / "model.safetensors"
    data = bytearray(weights.read_bytes())
    assert len(data) > 3 << 20  # longer than the first and last MiB the old digest read
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(4096)
    weights.write_bytes(bytes(data))
    assert source_digest(str(changed)) != source_digest(str(DEMO_MODEL_DIR))
    assert source_digest(str(changed)) == source_digest(str(changed))  # cached by path, size, mtime: same answer


def test_adapter_keys_that_escape_the_cache_are_refused(s3_endpoint, s3_bucket, tmp_path, monkeypatch):
    import boto3

    from meterread.models.loading import fetch_directory

    fs, bucket = s3_bucket
    monkeypatch.setenv("METERREAD_CACHE", str(tmp_path / "cache"))
    fs.pipe(f"{bucket}/adapters/v1/adapter_config.json", b"{}")
    fs.pipe(f"{bucket}/adapters/v1/adapter_model.safetensors", b"weights")
    escape = "../../../../escaped.txt"
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=bucket, Key=f"adapters/v1/{escape}", Body=b"x")
    assert any(".." in key for key in fs.find(f"{bucket}/adapters/v1"))  # the store really holds such a key
    with pytest.raises(ValueError, match="outside the download folder"):
        fetch_directory(f"s3://{bucket}/adapters/v1", "adapter_config.json")
    assert not list(tmp_path.rglob("escaped.txt"))


def test_adapter_cache_follows_the_objects_not_the_url(s3_bucket, tmp_path, monkeypatch):
    from meterread.models.loading import fetch_directory

    fs, bucket = s3_bucket
    monkeypatch.setenv("METERREAD_CACHE", str(tmp_path / "cache"))
    url = f"s3://{bucket}/adapters/current"
    fs.pipe(f"{bucket}/adapters/current/adapter_config.json", b"{}")
    fs.pipe(f"{bucket}/adapters/current/adapter_model.safetensors", b"version one")
    fs.pipe(f"{bucket}/adapters/current/notes/huge.bin", b"not needed")
    first = Path(fetch_directory(url, "adapter_config.json"))
    assert (first / "adapter_model.safetensors").read_bytes() == b"version one"
    assert sorted(p.name for p in first.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    fs.pipe(f"{bucket}/adapters/current/adapter_model.safetensors", b"version two")
    second = Path(fetch_directory(url, "adapter_config.json"))
    assert second != first and (second / "adapter_model.safetensors").read_bytes() == b"version two"


def test_a_whole_model_is_fetched_with_every_file_still_inside_the_cache(s3_bucket, tmp_path, monkeypatch):
    from meterread.models.loading import fetch_directory

    fs, bucket = s3_bucket
    monkeypatch.setenv("METERREAD_CACHE", str(tmp_path / "cache"))
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        fs.pipe(f"{bucket}/models/v2/{name}", name.encode())
    fetched = Path(fetch_directory(f"s3://{bucket}/models/v2", "config.json", wanted=None))
    assert sorted(p.name for p in fetched.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    with pytest.raises(FileNotFoundError, match="has no adapter_config.json"):
        fetch_directory(f"s3://{bucket}/models/v2", "adapter_config.json")
