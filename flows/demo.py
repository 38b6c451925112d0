"""`make demo`: the demo (`meterread.demo`) with every read run by the nightly-read Prefect flow.

Run:  python -m flows.demo [--workdir demo] [--n 36] [--seed 2026]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.nightly_read import nightly_read
from meterread.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description="Sample photos -> nightly-read flow -> Parquet -> accuracy.")
    parser.add_argument("--workdir", type=Path, default=Path("demo"), help="Where the sample bucket and output go.")
    parser.add_argument("--n", type=int, default=36, help="Number of sample photos.")
    parser.add_argument("--seed", type=int, default=2026, help="Seed for the sample photos.")
    args = parser.parse_args()
    run_demo(args.workdir, args.n, args.seed, read_bucket=nightly_read, how="the nightly-read Prefect flow")


if __name__ == "__main__":
    main()
