"""Copy a trained checkpoint into meterread/assets/demo-model/ with its provenance.

    python scripts/bundle_demo_model.py RUN_DIR HELDOUT_EVAL_DIR --minutes N

RUN_DIR is the `output` of `meterread train configs/demo-tiny-paligemma.yaml ...` (its best/ is bundled);
HELDOUT_EVAL_DIR holds the metrics.json of `meterread eval` on the held-out synthetic set.
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("heldout_dir", type=Path)
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock training time")
    parser.add_argument(
        "--training-data", default='{"train": 10000, "valid": 400, "seed": 101, "sizes": [[640, 480], [1024, 768]]}'
    )
    parser.add_argument("--heldout-data", default='{"test": 1200, "seed": 909, "sizes": "mixed 640x480..2560x1440"}')
    args = parser.parse_args()
    best = args.run_dir / "best"
    heldout = json.loads((args.heldout_dir / "metrics.json").read_text())
    train_config = json.loads((best / "train_config.json").read_text())
    shutil.rmtree(TARGET, ignore_errors=True)
    TARGET.mkdir(parents=True)
    for name in KEEP:
        if (best / name).is_file():
            shutil.copy2(best / name, TARGET / name)
    provenance = {
        "recipe": "configs/demo-tiny-paligemma.yaml",
        "command": f"meterread train configs/demo-tiny-paligemma.yaml dataset={train_config['dataset']} "
        f"output={train_config['output']}",
        "seed": train_config["seed"],
        "training_data": {"generator": "meterread.synth.write_dataset", **json.loads(args.training_data)},
        "dataset_manifest": json.loads((best / "dataset_manifest.json").read_text())["digest"],
        "valid": json.loads((best / "metrics.json").read_text())["valid"],
        "heldout": {
            "generator": "meterread.synth.write_dataset",
            **json.loads(args.heldout_data),
            **{
                k: heldout[k]
                for k in (
                    "count",
                    "exact_match",
                    "character_error_rate",
                    "parse_rate",
                    "accuracy_at_coverage",
                    "by_meter_type",
                )
            },
        },
        "training_minutes_on_2_cpu_cores": args.minutes,
    }
    (TARGET / "provenance.json").write_text(json.dumps(provenance, indent=2))
    print(f"bundled {best} into {TARGET}")


if __name__ == "__main__":
    main()
