"""How often the display search holds the whole register of a real-crop photo: a measurement.

    .venv/bin/python scripts/measure_display.py DIGITS [--part heldout] [--per-type 80] [--seed 4242]

Renders `--per-type` photos of each meter type whose register is built from the digit crops of `--part`
(`meterread synth --digits`, photo sizes mixed from 640x480 to 2560x1440), runs the display search on each and counts
the photos whose found box holds at least 95% of the true register window
(`meterread.data.geometry.display_holds_register`); prints the count per meter type and in all. docs/training.md
records what it measured.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from meterread.data.geometry import display_holds_register
from meterread.data.real_photos import DigitSource
from meterread.data.synth import METER_TYPES, pick_size, plan_samples


def measure(source: DigitSource, per_type: int, seed: int) -> dict[str, tuple[int, int]]:
    """{meter type: (photos held, photos)}, deterministic in `seed`."""
    held, total = Counter(), Counter()
    for meter_type in METER_TYPES:
        for sample, sample_seed in plan_samples(per_type, seed=seed, meter_types=(meter_type,)):
            rng = np.random.default_rng(sample_seed)
            size = pick_size(None, rng)
            photo, _, _, corners = source.render(sample.label, meter_type, sample.roll > 0, rng, size)
            held[meter_type] += display_holds_register(photo, corners)
            total[meter_type] += 1
    return {meter_type: (held[meter_type], total[meter_type]) for meter_type in METER_TYPES}


def main(argv: list[str] | None = None) -> dict[str, tuple[int, int]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("digits", help="the digit crops (../shared/data/meter-digits)")
    parser.add_argument("--part", default="heldout", help="train, valid, test or heldout crops")
    parser.add_argument("--per-type", type=int, default=80)
    parser.add_argument("--seed", type=int, default=4242)
    args = parser.parse_args(argv)
    counts = measure(DigitSource(args.digits, args.part), args.per_type, args.seed)
    for meter_type, (held, total) in counts.items():
        print(f"{meter_type:24s} {held:4d} / {total}")
    held, total = (sum(column) for column in zip(*counts.values()))
    print(f"{'all':24s} {held:4d} / {total} ({held / total:.1%})")
    return counts


if __name__ == "__main__":
    main()
