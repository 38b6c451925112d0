"""`make demo-model` goes on where it stopped: the Makefile's steps run against stand-in commands that only log."""

import os
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
    """Run `make demo-model` on stand-ins; returns a function of extra make arguments and environment that
    returns (return code, the commands run)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("meterread", FAKE_METERREAD), ("python", FAKE_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (bin_dir / ".installed").touch()
    log = tmp_path / "log"

    def run(*arguments: str, **environment: str) -> tuple[int, list[str]]:
        log.write_text("")
        paths = [f"BIN={bin_dir}", f"STAMP={bin_dir / '.installed'}", f"DATA={tmp_path / 'data'}"]
        command = ["make", "-s", "-C", str(ROOT), "demo-model", *paths, f"RUNS={tmp_path / 'runs'}", *arguments]
        env = {**os.environ, "LOG": str(log), **environment}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        return done.returncode, log.read_text().splitlines()

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
    code, first = demo_model(FAIL_STAGE="ppocr-augment")
    assert code != 0
    assert trained(first) == ["ppocr-real", "ppocr-photos", "ppocr-augment"]
    assert made(first) == ["ppocr-strips", "strips-valid", "ppocr-strips2", "realphotos", "photos-synth"]

    code, second = demo_model()
    assert code == 0
    assert trained(second) == ["ppocr-augment", "ppocr-recolour"]
    assert all("--resume" in c for c in second if c.startswith("meterread train"))
    assert (tmp_path / "runs/ppocr-augment/latest/steps").read_text() == "step\nstep\n"  # its checkpoint continued
    assert not any(c.startswith("meterread import-ppocr") for c in second)
    assert made(second) == ["strips-recolour", "heldout", "strips-eval", "realphotos-heldout", "realphotos-eval"]
    assert second[-1].startswith("python scripts/bundle_demo_model.py")

    code, third = demo_model()
    assert code == 0 and len(third) == 1 and third[0].startswith("python scripts/bundle_demo_model.py")


def test_another_strip_imports_again_and_trains_every_stage_afresh(demo_model, tmp_path):
    assert demo_model()[0] == 0
    code, again = demo_model("STRIP=--strip-width 424 --strip-height 64")
    assert code == 0
    assert any(c.startswith("meterread import-ppocr") and "--strip-height 64" in c for c in again)
    assert trained(again) == ["ppocr-real", "ppocr-photos", "ppocr-augment", "ppocr-recolour"]
    assert (tmp_path / "runs/ppocr-real/latest/steps").read_text() == "step\n"  # started over, not resumed
    assert made(again) == []  # the data stays


def test_clean_demo_model_makes_everything_again(demo_model, tmp_path):
    assert demo_model()[0] == 0
    subprocess.run(
        ["make", "-s", "-C", str(ROOT), "clean-demo-model", f"DATA={tmp_path / 'data'}", f"RUNS={tmp_path / 'runs'}"],
        check=True,
        capture_output=True,
    )
    code, again = demo_model()
    assert code == 0 and len(trained(again)) == 4 and len(made(again)) == 10
