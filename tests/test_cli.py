import json

from typer.testing import CliRunner

from meterread.cli import app
from meterread.synth import write_bucket

runner = CliRunner()


def test_read_command_runs_the_pipeline(tmp_path, tiny_paligemma):
    write_bucket(tmp_path / "bucket", 4, seed=11)
    args = [
        "read",
        str(tmp_path / "bucket"),
        str(tmp_path / "out"),
        "--model",
        tiny_paligemma,
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--run-id",
        "cli-1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["run_id"] == "cli-1" and summary["processed"] == 4
    again = runner.invoke(app, args[:-2] + ["--limit", "1", "--reprocess"])
    assert again.exit_code == 0 and '"processed": 1' in again.output


def test_read_rejects_bad_settings_clearly(tmp_path):
    result = runner.invoke(app, ["read", str(tmp_path), str(tmp_path / "o"), "--batch-size", "0"])
    assert result.exit_code != 0
    assert "batch_size must be at least 1" in result.output


def test_synth_writes_a_bucket(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path / "b"), "--n", "3", "--seed", "1"])
    assert result.exit_code == 0
    assert len(list((tmp_path / "b").rglob("*.jpg"))) == 3
    assert len((tmp_path / "b" / "annotations.jsonl").read_text().splitlines()) == 3
