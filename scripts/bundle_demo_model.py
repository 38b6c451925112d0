"""Copy a trained checkpoint into meterread/assets/demo-model/ with its provenance (`make demo-model` calls this).

    python scripts/bundle_demo_model.py HELDOUT_EVAL_DIR HELDOUT_COMMAND \\
        --stage RECIPE RUN_DIR MINUTES DATA_COMMAND [--stage ...]

MINUTES: `auto` reads the run's own clock (`wall_minutes` in RUN_DIR/latest/metrics.json); a number is for runs
made before training recorded it.

Stages come oldest first; the last stage's `RUN_DIR/best/` is bundled. Each stage records its recipe, the
`meterread train` command rebuilt from its saved train_config.json, the `meterread synth` command of its data, the
dataset manifest digest, its best validation metrics and its wall-clock minutes. HELDOUT_EVAL_DIR holds the
metrics.json of `meterread eval` on the held-out set made by HELDOUT_COMMAND.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "meterread" / "assets" / "demo-model"
KEEP = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "meterread.json",
    "train_config.json",
    "metrics.json",
    "dataset_manifest.json",
)
HELDOUT_KEYS = ("count", "exact_match", "character_error_rate", "parse_rate", "accuracy_at_coverage", "by_meter_type")


def stage_record(recipe: str, run_dir: Path, minutes: str, data_command: str) -> dict:
    """What one training stage was: recipe, command, data, seed, manifest, best validation metrics, minutes."""
    best = run_dir / "best"
    if minutes == "auto":
        minutes = json.loads((run_dir / "latest" / "metrics.json").read_text())["wall_minutes"]
    config = json.loads((best / "train_config.json").read_text())
    overrides = " ".join(f"{key}={config[key]}" for key in ("base", "dataset", "output") if config.get(key))
    return {
        "recipe": recipe,
        "command": f"meterread train {recipe} {overrides}",
        "training_data": data_command,
        "seed": config["seed"],
        "dataset_manifest": json.loads((best / "dataset_manifest.json").read_text())["digest"],
        "valid": json.loads((best / "metrics.json").read_text())["valid"],
        "training_minutes_on_2_cpu_cores": float(minutes),
        "best_at_step": json.loads((best / "metrics.json").read_text())["step"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("heldout_dir", type=Path)
    parser.add_argument("heldout_command")
    parser.add_argument(
        "--stage", nargs=4, action="append", required=True, metavar=("RECIPE", "RUN_DIR", "MINUTES", "DATA_COMMAND")
    )
    args = parser.parse_args()
    stages = [stage_record(recipe, Path(run), minutes, data) for recipe, run, minutes, data in args.stage]
    best = Path(args.stage[-1][1]) / "best"
    heldout = json.loads((args.heldout_dir / "metrics.json").read_text())
    shutil.rmtree(TARGET, ignore_errors=True)
    TARGET.mkdir(parents=True)
    for name in KEEP:
        if (best / name).is_file():
            shutil.copy2(best / name, TARGET / name)
    last = stages[-1]
    provenance = {
        "recipe": last["recipe"],
        "command": "make demo-model  # runs every stage below, then `meterread eval` on the held-out set",
        "seed": last["seed"],
        "training_data": last["training_data"],
        "dataset_manifest": last["dataset_manifest"],
        "stages": stages,  # the last stage's validation metrics are also the bundle's metrics.json
        "heldout": {"data": args.heldout_command, **{key: heldout[key] for key in HELDOUT_KEYS}},
        "training_minutes_on_2_cpu_cores": sum(stage["training_minutes_on_2_cpu_cores"] for stage in stages),
    }
    (TARGET / "provenance.json").write_text(json.dumps(provenance, indent=2))
    print(f"bundled {best} into {TARGET}")


if __name__ == "__main__":
    main()
