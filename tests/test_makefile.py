"""`make demo-model` goes on where it stopped: the Makefile's steps run against stand-in commands that only log."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Stands in for .venv/bin/meterread: logs its arguments; `train` counts its steps in OUTPUT/latest/ (what --resume
# continues) and fails when its output names $FAIL_STAGE.
FAKE_METERREAD = """#!/bin/sh
echo "meterread $*" >> "$LOG"
if [ "$1" = train ]; then
    for arg in "$@"; do case "$arg" in output=*) out="${arg#output=}";; esac; done
    mkdir -p "$out/latest" && echo step >> "$out/latest/steps"
    case "$out" in *"${FAIL_STAGE:-none}") exit 1;; esac
fi
"""
FAKE_PYTHON = """#!/bin/sh
echo "python $*" >> "$LOG"
"""


@pytest.fixture
def demo_model(tmp_path):
    """Run `make demo-model` on stand-ins, with the recipes copied to tmp_path/configs; returns a function of extra
    make arguments and environment that returns (return code, the commands run, what make printed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("meterread", FAKE_METERREAD), ("python", FAKE_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (bin_dir / ".installed").touch()
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    log = tmp_path / "log"
    paths = [f"BIN={bin_dir}", f"STAMP={bin_dir / '.installed'}", f"CONFIGS={tmp_path / 'configs'}"]
    paths += [f"DATA={tmp_path / 'data'}", f"RUNS={tmp_path / 'runs'}"]
    # a make running these tests (make test) must not pass its own flags (-k, -j) to the one under test
    inherited = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}

    def run(*arguments: str, target: str = "demo-model", **environment: str) -> tuple[int, list[str], str]:
        log.write_text("")
        command = ["make", "-s", "-C", str(ROOT), target, *paths, *arguments]
        done = subprocess.run(
            command, env={**inherited, "LOG": str(log), **environment}, capture_output=True, text=True, timeout=60
        )
        return done.returncode, log.read_text().splitlines(), done.stdout

    return run


def trained(commands: list[str]) -> list[str]:
    """The output folders' names of the training stages run, in order."""
    return [
        Path(word.removeprefix("output=")).name
        for command in commands
        if command.startswith("meterread train")
        for word in command.split()
        if word.startswith("output=")
    ]


def made(commands: list[str]) -> list[str]:
    """The folders' names of the data sets made (`meterread strips DIGITS OUT`, `meterread synth OUT`), in order."""
    words = [command.split() for command in commands]
    return [Path(w[3] if w[1] == "strips" else w[2]).name for w in words if w[1] in ("strips", "synth")]


def test_an_interrupted_demo_model_goes_on_from_the_stage_that_stopped(demo_model, tmp_path):
    code, first, _ = demo_model(FAIL_STAGE="ppocr-augment")
    assert code != 0
    assert trained(first) == ["ppocr-real", "ppocr-photos", "ppocr-augment"]
    assert made(first) == ["ppocr-strips", "strips-valid", "ppocr-strips2", "realphotos", "photos-synth"]

    code, second, _ = demo_model()
    assert code == 0
    assert trained(second) == ["ppocr-augment", "ppocr-recolour", "ppocr-taller"]
    assert all("--resume" in c for c in second if c.startswith("meterread train"))
    assert (tmp_path / "runs/ppocr-augment/latest/steps").read_text() == "step\nstep\n"  # its checkpoint continued
    assert not any(c.startswith("meterread import-ppocr") for c in second)
    assert made(second) == [
        "strips-recolour",
        "strips-recolour5",
        "heldout",
        "strips-eval",
        "realphotos-heldout",
        "realphotos-eval",
    ]
    restrip = [c for c in second if c.startswith("meterread restrip")]  # stage 5's base: the stage-4 average, taller
    assert len(restrip) == 1 and restrip[0].endswith("--strip-width 424 --strip-height 64")
    assert second[-1].startswith(f"python scripts/bundle_demo_model.py {tmp_path}/runs/ppocr-soup5 ")  # its evals

    code, third, _ = demo_model()
    assert code == 0 and len(third) == 1 and third[0].startswith("python scripts/bundle_demo_model.py")


def test_another_strip_imports_again_and_trains_every_stage_afresh(demo_model, tmp_path):
    assert demo_model()[0] == 0
    code, again, _ = demo_model("STRIP=--strip-width 424 --strip-height 64")
    assert code == 0
    assert any(c.startswith("meterread import-ppocr") and "--strip-height 64" in c for c in again)
    assert trained(again) == ["ppocr-real", "ppocr-photos", "ppocr-augment", "ppocr-recolour", "ppocr-taller"]
    assert (tmp_path / "runs/ppocr-real/latest/steps").read_text() == "step\n"  # started over, not resumed
    assert made(again) == []  # the data stays


def test_another_tall_strip_restrips_the_stage_4_average_and_trains_stage_5_alone_afresh(demo_model, tmp_path):
    assert demo_model()[0] == 0
    code, again, _ = demo_model("TALL_STRIP=--strip-width 512 --strip-height 64")
    assert code == 0 and trained(again) == ["ppocr-taller"] and made(again) == []
    assert [c for c in again if c.startswith("meterread restrip")][0].endswith("--strip-width 512 --strip-height 64")
    assert (tmp_path / "runs/ppocr-taller/latest/steps").read_text() == "step\n"  # started over, not resumed


def test_an_edited_recipe_trains_its_stage_and_the_ones_after_afresh(demo_model, tmp_path):
    assert demo_model()[0] == 0
    (tmp_path / "configs/ppocr-augment.yaml").write_text((tmp_path / "configs/ppocr-augment.yaml").read_text())
    code, again, _ = demo_model()
    assert code == 0
    assert trained(again) == ["ppocr-augment", "ppocr-recolour", "ppocr-taller"]
    assert (tmp_path / "runs/ppocr-augment/latest/steps").read_text() == "step\n"
    assert made(again) == []


def test_other_digit_crops_make_the_data_again_and_retrain(demo_model, tmp_path):
    assert demo_model()[0] == 0
    code, again, _ = demo_model(f"DIGITS={tmp_path / 'other-digits'}")
    assert code == 0
    from_crops = ["ppocr-strips", "strips-valid", "ppocr-strips2", "realphotos", "strips-recolour", "strips-recolour5"]
    assert made(again) == from_crops + ["strips-eval", "realphotos-heldout", "realphotos-eval"]
    assert trained(again) == ["ppocr-real", "ppocr-photos", "ppocr-augment", "ppocr-recolour", "ppocr-taller"]


def test_a_dry_run_of_a_finished_model_shows_only_the_bundling(demo_model, tmp_path):
    assert demo_model()[0] == 0
    code, dry, printed = demo_model("-n")
    assert code == 0 and dry == []  # -n runs no meterread (the stand-in logs every call)
    steps = [line for line in printed.splitlines() if line.startswith((str(tmp_path / "bin"), "rm -rf"))]
    assert len(steps) == 1 and "bundle_demo_model.py" in steps[0]  # no import, no stage emptied or trained


def test_clean_demo_model_makes_everything_again(demo_model):
    assert demo_model()[0] == 0
    assert demo_model(target="clean-demo-model")[0] == 0
    code, again, _ = demo_model()
    assert code == 0 and len(trained(again)) == 5 and len(made(again)) == 11
