import json

from typer.testing import CliRunner

from meterread.cli import app
from meterread.data.synth import write_bucket

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


def test_read_of_a_missing_source_fails_and_writes_nothing_unless_allowed(tmp_path, tiny_paligemma):
    args = ["read", str(tmp_path / "nonexistent"), str(tmp_path / "out"), "--model", tiny_paligemma, "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "does not exist" in result.output, result.output
    assert not (tmp_path / "out").exists()  # no _manifests
    allowed = runner.invoke(app, [*args, "--allow-empty"])
    assert allowed.exit_code == 0 and '"listed": 0' in allowed.output, allowed.output


def test_read_with_the_wrong_family_says_so_in_one_line(tmp_path):
    write_bucket(tmp_path / "bucket", 1, seed=12)
    args = ["read", str(tmp_path / "bucket"), str(tmp_path / "out"), "--family", "florence2", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "use --family ppocr" in result.output, result.output


def test_read_follows_a_model_registry(tmp_path, tiny_paligemma):
    from meterread.training.registry import publish

    write_bucket(tmp_path / "bucket", 2, seed=14)
    folder = tmp_path / "registry"
    args = ["read", str(tmp_path / "bucket"), str(tmp_path / "out"), "--model-registry", str(folder), "--device", "cpu"]
    both = runner.invoke(app, [*args, "--model", tiny_paligemma])
    assert both.exit_code != 0 and "not both" in both.output, both.output
    empty = runner.invoke(app, args)
    assert empty.exit_code == 1 and f"model registry {folder} has no current model" in empty.output, empty.output
    assert not (tmp_path / "out").exists()

    pointer = publish(str(folder), tiny_paligemma, 0.95, record={"family": "paligemma", "strategy": "full"})
    result = runner.invoke(app, [*args, "--run-id", "reg-1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "_manifests" / "reg-1.json").read_text())
    assert (manifest["model_reference"], manifest["model_version"]) == (f"registry://{folder}", pointer["version"])


def test_read_takes_the_flows_prompt_and_key_pattern(tmp_path, tiny_paligemma):
    write_bucket(tmp_path / "bucket", 2, seed=13)
    pattern = r"^(?P<meter_id>MTR-[0-9-]+)/(?P<timestamp>\d{8}T\d{6})\.jpg$"
    args = ["read", str(tmp_path / "bucket"), str(tmp_path / "out"), "--model", tiny_paligemma, "--device", "cpu"]
    result = runner.invoke(app, [*args, "--prompt", "read the register", "--key-pattern", pattern])
    assert result.exit_code == 0, result.output
    import pandas as pd

    rows = pd.read_parquet(tmp_path / "out")
    assert set(rows["prompt"]) == {"read the register"} and rows["meter_id"].str.startswith("MTR-").all()


def test_help_starts_without_heavy_imports():
    import subprocess
    import sys

    from meterread.data import commands
    from meterread.data.synth import ROLL_SHARE

    assert commands.ROLL_SHARE == ROLL_SHARE  # the CLI's default, kept as a literal so --help imports no numpy
    code = (
        "import sys; from typer.testing import CliRunner; from meterread.cli import app; "
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0; "
        "heavy = {'torch', 'transformers', 'pyarrow', 'cv2', 'pandas'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unlock_removes_a_crashed_runs_lease_and_says_who_held_it(tmp_path):
    from meterread.read.lease import LEASE_PATH, acquire
    from meterread.storage import resolve

    fs, root = resolve(str(tmp_path / "out"))
    acquire(fs, root, "night-3")
    live = runner.invoke(app, ["unlock", str(tmp_path / "out")])  # held by this live process
    assert live.exit_code == 1 and "run night-3" in live.output and "still running" in live.output
    lease_file = tmp_path / "out" / LEASE_PATH
    lease_file.write_text(json.dumps({**json.loads(lease_file.read_text()), "host": "gpu-worker-2"}))
    result = runner.invoke(app, ["unlock", str(tmp_path / "out")])
    assert result.exit_code == 0 and "removed the lease of run night-3 (host gpu-worker-2" in result.output
    assert not lease_file.exists()
    assert "nothing to unlock" in runner.invoke(app, ["unlock", str(tmp_path / "out")]).output


def test_eval_of_a_missing_split_fails_with_the_path_it_looked_for(tmp_path):
    write_bucket(tmp_path / "data" / "test", 2, seed=14)
    result = runner.invoke(app, ["eval", str(tmp_path / "data"), "--split", "valid", "--out", str(tmp_path / "e")])
    assert result.exit_code == 2
    assert f"{tmp_path / 'data'}/valid/annotations.jsonl" in result.output, result.output
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_read_settings_come_from_the_file_then_options_then_overrides(tmp_path, monkeypatch):
    """A settings file's values stay unless an option given on the command line or a key=value override changes
    them; options left at their defaults change nothing."""
    from meterread.read import runner as read_runner

    seen = []
    manifest = {"run_id": "r", "listed": 0, "already_done": 0, "processed": 0, "counts": {}, "manifest_uri": "m"}
    monkeypatch.setattr(read_runner, "run_read", lambda config: seen.append(config) or manifest)
    settings = tmp_path / "read.yaml"
    settings.write_text("batch_size: 4\nreprocess: true\nshard_size: 9\nmodel:\n  dtype: float32\n  device: cpu\n")
    args = ["read", str(tmp_path / "in"), str(tmp_path / "out"), "--config", str(settings)]
    result = runner.invoke(
        app, [*args, "--shard-size", "7", "model.pattern=6.1", "run_id=20261126", "list_after=2026-11-26"]
    )
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.batch_size, config.reprocess, config.shard_size) == (4, True, 7)
    assert (config.model.dtype, config.model.device, config.model.pattern) == ("float32", "cpu", "6.1")
    assert (config.run_id, config.list_after) == ("20261126", "2026-11-26")  # numbers and dates as written
    explicit = runner.invoke(app, [*args, "--batch-size", "16"])  # given, though equal to the default: it wins
    assert explicit.exit_code == 0, explicit.output
    assert seen[-1].batch_size == 16 and seen[-1].shard_size == 9


def test_strips_with_font_makes_from_the_command_line(tmp_path):
    from tests.data.conftest import DIGITS

    out = tmp_path / "strips"
    args = ["strips", str(DIGITS), str(out), "--train", "8", "--valid", "0", "--test", "0", "--font-makes", "2"]
    result = runner.invoke(app, [*args, "--font-crops", "20", "--font-share", "0.5", "--seed", "3"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["font_makes"]) == 2 and manifest["font_share"] == 0.5
    assert len(list((out / "font-makes").rglob("*.jpg"))) == 40
    refused = runner.invoke(app, ["strips", str(DIGITS), str(tmp_path / "x"), "--train", "0", "--font-makes", "2"])
    assert refused.exit_code != 0 and "font makes only join training strips" in refused.output
    no_fonts = runner.invoke(app, [*args, "--fonts-dir", str(tmp_path / "missing")])
    assert no_fonts.exit_code != 0 and "font folder" in no_fonts.output


def test_strips_with_recoloured_loosened_rolled_or_restyled_registers_from_the_command_line(tmp_path):
    from tests.data.conftest import DIGITS

    args = ["strips", str(DIGITS), str(tmp_path / "strips"), "--train", "6", "--valid", "0", "--test", "0"]
    result = runner.invoke(app, [*args, "--recolour", "0.5"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "strips" / "manifest.json").read_text())["recolour"] == 0.5
    refused = runner.invoke(app, [*args, "--recolour", "2"])
    assert refused.exit_code != 0 and "recolour is a share of training strips" in refused.output
    no_training = runner.invoke(app, [*args[:3], "--train", "0", "--test", "2", "--recolour", "0.5"])
    assert no_training.exit_code != 0 and "recolour changes training strips only" in no_training.output
    loose = runner.invoke(app, [*args, "--loose", "0.5"])
    assert loose.exit_code == 0 and json.loads((tmp_path / "strips" / "manifest.json").read_text())["loose"] == 0.5
    rolled = runner.invoke(app, [*args, "--rolled-last", "0.7"])
    assert rolled.exit_code == 0, rolled.output
    assert json.loads((tmp_path / "strips" / "manifest.json").read_text())["rolled_last"] == 0.7
    restyled = runner.invoke(app, [*args, "--restyle", "0.5"])
    assert restyled.exit_code == 0, restyled.output
    assert json.loads((tmp_path / "strips" / "manifest.json").read_text())["restyle"] == 0.5


def test_synth_refuses_recolouring_anything_but_training_photos_of_real_digits(tmp_path):
    from tests.data.conftest import DIGITS

    out = str(tmp_path / "photos")
    for args in (
        ["--n", "2"],  # no real crops to paint
        ["--n", "2", "--digits", str(DIGITS), "--digits-part", "heldout"],  # evaluation photos
        ["--n", "0", "--valid", "2", "--digits", str(DIGITS)],  # no training photos at all
    ):
        refused = runner.invoke(app, ["synth", out, *args, "--recolour", "0.5"])
        assert refused.exit_code == 2 and "recolour" in refused.output.lower(), args
        assert not (tmp_path / "photos").exists()


def test_mix_of_validation_splits_needs_the_flag_and_a_typo_fails(tmp_path):
    """`make evaluate-bundled` mixes three validation-only sets; without the flag that is a mistake, said as one."""
    for name in ("a", "b"):
        (tmp_path / name / "valid").mkdir(parents=True)
        (tmp_path / name / "valid" / "annotations.jsonl").write_text('{"image": "v.jpg", "suffix": "1"}\n')
    sources = [str(tmp_path / "a"), str(tmp_path / "b")]
    refused = runner.invoke(app, ["mix", str(tmp_path / "mix"), *sources])
    assert refused.exit_code == 2 and "has a training line" in unboxed(refused.output)
    mixed = runner.invoke(app, ["mix", "--validation-only", str(tmp_path / "mix"), *sources])
    assert mixed.exit_code == 0 and "'valid': 2" in mixed.output, mixed.output
    typo = runner.invoke(app, ["mix", "--validation-only", str(tmp_path / "mix2"), str(tmp_path / "c")])
    assert typo.exit_code == 2 and "has no annotations.jsonl" in unboxed(typo.output)


def unboxed(output: str) -> str:
    """A CLI error without its panel's frame and line breaks (long paths wrap it)."""
    return " ".join("".join(" " if char in "│╭╮╰╯─" else char for char in output).split())


def test_eval_refuses_a_known_register_beside_a_fixed_pattern(tmp_path):
    result = CliRunner().invoke(app, ["eval", str(tmp_path), "--known-register", "--pattern", "5.1"])
    assert result.exit_code == 2 and "reads each photo within its own register; drop --pattern" in result.output
