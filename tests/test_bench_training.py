"""`meterread bench --training`: a ppocr training step timed in both memory layouts, with the same gradients."""

import json
import subprocess
import sys

import pytest

from meterread.bench_training import bench_training, format_training


def test_both_layouts_are_timed_on_the_models_strip_and_give_the_same_gradients(tiny_ppocr):
    results = bench_training(tiny_ppocr, batch_size=3, repeats=2, seed=1)
    steps = results["seconds_per_step"]
    assert set(steps) == {"channels_last", "contiguous"} and all(seconds > 0 for seconds in steps.values())
    assert results["contiguous_over_channels_last"] == pytest.approx(steps["contiguous"] / steps["channels_last"])
    assert results["gradient_relative_difference"] < 1e-3
    assert results["batch_size"] == 3 and results["repeats"] == 2 and len(results["strip"]) == 2
    assert "ratio contiguous / channels-last" in format_training(results)


def test_the_bench_command_writes_the_training_results(tiny_ppocr, tmp_path):
    out = tmp_path / "training.json"
    command = [sys.executable, "-m", "meterread.bench", "--training", "--model", tiny_ppocr]
    command += ["--batch-size", "2", "--repeats", "1", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(out.read_text())["kind"] == "training-step"
    assert "s/step" in result.stdout
    refused = subprocess.run(command[:-2] + ["--repeats", "0"], capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "at least 1" in refused.stderr
