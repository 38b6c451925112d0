"""`meterread bench --history`: the synthetic history is a real, folded dataset; the night is measured per size."""

import subprocess
import sys

import pytest

from meterread.bench_history import bench_history, fill_history, format_history, parse_history
from meterread.read import sink, state
from meterread.read.history import MeterHistory
from meterread.storage import resolve


def test_history_sizes_are_parsed_and_bad_ones_refused():
    assert parse_history("0,1000000") == [0, 1_000_000]
    assert parse_history("1_000, 5") == [1000, 5]
    for bad in ("", "a,1", "-5", ","):
        with pytest.raises(ValueError, match="--history takes"):
            parse_history(bad)


def test_the_synthetic_history_is_a_folded_dataset_of_plausible_series(tmp_path):
    files = fill_history(tmp_path / "out", 12_345, ["NIGHT-1", "NIGHT-2"], meter_count=1_000)
    fs, root = resolve(str(tmp_path / "out"))
    table = sink.read_output(fs, root)
    assert files == 3 and len(table) == 12_345
    assert len(set(table.column("image_uri").to_pylist())) == 12_345
    view = state.StateView(fs, root)
    assert view.unfolded == []  # folded, as the nights before would have left it
    history = MeterHistory.from_table(view.history(["NIGHT-1"]))
    series = [value for _, value in history.readings["NIGHT-1"]]
    assert len(series) >= 2 and series == sorted(series)  # the night's meter has an increasing history
    assert max(at for at, _ in history.readings["NIGHT-1"]).year == 2025  # before the night's first photo


def test_the_table_shows_ratios_to_the_first_size():
    point = {"history_rows": 0, "files": 0, "wall_s": 5.0, "peak_rss_mb": 500.0, "wall_ratio": 1.0}
    points = [
        {**point, "peak_rss_ratio": 1.0},
        {**point, "history_rows": 10**6, "files": 200, "wall_ratio": 1.1, "peak_rss_ratio": 1.04},
    ]
    text = format_history({"n": 24, "points": points})
    assert "1,000,000" in text and "1.10" in text and "1.04" in text


@pytest.mark.slow
def test_a_night_is_measured_for_each_history_size(tmp_path, tiny_paligemma):
    results = bench_history([0, 6_000], 6, 3, tiny_paligemma, 4, str(tmp_path), log=lambda *_: None)
    first, second = results["points"]
    assert (first["history_rows"], second["history_rows"], second["files"]) == (0, 6_000, 2)
    assert all(point["wall_s"] > 0 and 100 < point["peak_rss_mb"] < 4_000 for point in results["points"])
    assert first["wall_ratio"] == 1.0 and second["wall_ratio"] == second["wall_s"] / first["wall_s"]


def test_the_bench_command_refuses_bad_history_sizes():
    result = subprocess.run(
        [sys.executable, "-m", "meterread.bench", "--history", "zero"], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "--history takes comma-separated row counts" in result.stderr
