"""scripts/measure_display.py: the display search's hold rate on real-crop photos."""

import pytest

from meterread.data.synth import METER_TYPES
from tests.scripts.conftest import load_script


@pytest.fixture(scope="module")
def measure_display():
    return load_script("measure_display")


def test_it_counts_every_photo_of_every_meter_type_and_most_are_held(measure_display, digits_root, capsys):
    counts = measure_display.main([str(digits_root), "--per-type", "3", "--seed", "5"])
    assert set(counts) == set(METER_TYPES) and all(total == 3 for _, total in counts.values())
    assert sum(held for held, _ in counts.values()) >= 10  # of 12
    assert "all" in capsys.readouterr().out
    assert measure_display.main([str(digits_root), "--per-type", "3", "--seed", "5"]) == counts  # deterministic
