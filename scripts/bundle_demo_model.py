"""Copy a trained checkpoint into meterread/assets/demo-model/ with its provenance (`make demo-model` calls this).

    python scripts/bundle_demo_model.py EVAL_DIR --eval NAME DATA_COMMAND [--eval ...] \\
        [--pretrained BASE_DIR IMPORT_COMMAND] --stage RECIPE RUN_DIR MINUTES DATA_COMMAND [--stage ...] \\
        [--averaged SOUP_DIR VALID_METRICS COMMAND] [--earlier-average SOUP_DIR VALID_METRICS COMMAND]... \\
        [--earlier-stages PROVENANCE_JSON] [--restripped RESTRIP_DIR COMMAND] [--relabel OLD NEW]...
    python scripts/bundle_demo_model.py EVAL_DIR --eval NAME DATA_COMMAND [--eval ...] \\
        --annotate-only VALID_METRICS CHOSEN_ON       # re-measure the bundled model, keep its weights
    python scripts/bundle_demo_model.py EVAL_DIR --eval NAME DATA_COMMAND [--eval ...] \\
        --ensemble ENSEMBLE_DIR VALID_METRICS COMMAND [--relabel OLD NEW]...   # bundle readers joined as one

`--into DIR` writes the bundle into DIR instead of meterread/assets/demo-model/: a reader bundled with its
provenance (and, with no `--eval`, no evaluations) that `meterread ensemble` then joins with another. `--ensemble`
bundles such a join (ENSEMBLE_DIR: `meterread ensemble`'s output, each member a bundle with its own provenance.json;
VALID_METRICS: its `meterread eval` on the validation set of stages 2-5, which gives the min_confidence; COMMAND:
the `meterread ensemble` command): provenance.json then records the join and the evaluations, and each
member-N/provenance.json every stage of that reader.

Each `--eval NAME` is the `meterread eval --baseline ppocr` output in EVAL_DIR/eval-NAME/ (model and PP-OCRv4
on the same photos; with `--known-register`, recorded as such), made on the data DATA_COMMAND wrote; `synthetic` is
also recorded as `heldout`. The bundle's
`meterread.json` gets the `min_confidence` the last stage's validation set recommends (the lowest candidate at which
at most 1% of accepted readings are wrong), so reads use it when none is given.

MINUTES: `auto` reads the run's own clock (`wall_minutes` in RUN_DIR/latest/metrics.json); a number is for runs
made before training recorded it.

Stages come oldest first; the last stage's `RUN_DIR/best/` is bundled, or with `--averaged` the checkpoint
`meterread average` made of stages' best weights (SOUP_DIR, with its soup.json; VALID_METRICS: its `meterread eval`
on the last stage's validation set, which then also gives the min_confidence). `--earlier-average` (repeatable)
records an average a later stage started from (its base; VALID_METRICS: its eval on that stage's validation set) in
`earlier_averages`; it is not bundled. `--earlier-stages` takes the stages before the first `--stage` from an earlier
bundle's provenance.json (its stages, pretrained source and average, which goes to `earlier_averages`) when the first
`--stage` started from that bundle's weights and their run folders are gone (give it in place of `--earlier-average`
for that average, not beside it); the bundle folder named as a base or an ingredient is recorded as EARLIER_BUNDLE.
Each stage records its recipe, the
`meterread train` command rebuilt from its saved train_config.json, the `meterread synth` command of its data, the
dataset manifest digest, its best validation metrics and its wall-clock minutes. `--pretrained` records where the
first stage's weights came from: the command that made BASE_DIR and what BASE_DIR/provenance.json says of its source
(`meterread import-ppocr`: PP-OCRv4's ONNX file in rapidocr's wheel, Apache-2.0). `--restripped` records the
checkpoint `meterread restrip` set to another strip size for the stage that starts from it (its restrip.json: source,
strip before and after). `--relabel OLD NEW` (repeatable) writes NEW for OLD in every recorded path and command: for
runs made under other DATA and RUNS folders than the Makefile's defaults, so provenance names the recipe's folders.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from meterread.models.registry import ENSEMBLE_FILE
from meterread.training.evaluate import threshold_from_table

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
HELDOUT_KEYS = (
    "count",
    "exact_match",
    "digits_exact_match",
    "character_error_rate",
    "parse_rate",
    "accuracy_at_coverage",
    "by_meter_type",
)
EVAL_KEYS = HELDOUT_KEYS + ("by_meter_model", "thresholds")


def evaluation_record(run_dir: Path, name: str, data_command: str) -> dict:
    """One evaluation set: its data command, the model's metrics and the baseline's on the same photos."""
    metrics = json.loads((run_dir / f"eval-{name}" / "metrics.json").read_text())
    record = {"data": data_command, "split": metrics["split"], **{key: metrics[key] for key in EVAL_KEYS}}
    record["known_register"] = metrics.get("known_register", False)  # each photo read within its label's register
    if "baseline" in metrics:
        record["baseline"] = {"name": metrics["baseline"]["name"], **{k: metrics["baseline"][k] for k in EVAL_KEYS}}
    return record


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


NOTICE = """This model's weights derive from PP-OCRv4's mobile text recogniser (PaddlePaddle/PaddleOCR, Apache-2.0), as
shipped in the rapidocr-onnxruntime wheel (Apache-2.0): {source}. meterread copied them into its own network
(`meterread import-ppocr`), cut the output layer to digits and fine-tuned them on real digit crops
(meter-digits, Apache-2.0; its NOTICE) and synthetic photos; provenance.json records every step.
Licensed under the Apache License, Version 2.0: https://www.apache.org/licenses/LICENSE-2.0
"""


def pretrained_record(base_dir: str, command: str) -> dict:
    """Where the first stage's weights came from: the import command and the source the import recorded."""
    imported = json.loads((Path(base_dir) / "provenance.json").read_text())["stages"][0]
    return {"command": command, "source": imported["source"]}


def record_evaluations(target: Path, evaluations: dict, valid: dict, chosen_on: str) -> None:
    """Write the evaluations (model and baseline per set; none for a reader bundled to be joined) and the
    recommended min_confidence into a bundle."""
    settings = json.loads((target / "meterread.json").read_text())
    settings["min_confidence"] = threshold_from_table(valid.get("thresholds", []))
    (target / "meterread.json").write_text(json.dumps(settings, indent=2))
    provenance = json.loads((target / "provenance.json").read_text())
    if evaluations:
        synthetic = evaluations["synthetic"]
        provenance["heldout"] = {"data": synthetic["data"], **{key: synthetic[key] for key in HELDOUT_KEYS}}
        provenance["evaluations"] = evaluations
    provenance["min_confidence"] = {"value": settings["min_confidence"], "chosen_on": chosen_on}
    (target / "provenance.json").write_text(json.dumps(provenance, indent=2))


# The bundle before this one (earlier_averages[-1], git history), as `make demo-model` names those weights, so a
# stage that started from it records a command the recipe can run
EARLIER_BUNDLE = "runs/ppocr-soup4/best"


def recipe_names(extra=(), target: Path = TARGET) -> tuple[tuple[str, str], ...]:
    """The (old, new) replacements that make recorded paths name the recipe's folders: the bundle folder itself (a
    stage or an average that started from the earlier bundle; the folder now holds the new weights) as
    EARLIER_BUNDLE, then each pair of `extra` (`--relabel OLD NEW`), in order."""
    return ((str(target), EARLIER_BUNDLE), *(tuple(pair) for pair in extra))


def relabel(record, relabels: tuple[tuple[str, str], ...]):
    """`record` with each (old, new) of `relabels` replaced, in order, in every string it holds. Pure."""
    if isinstance(record, dict):
        return {key: relabel(value, relabels) for key, value in record.items()}
    if isinstance(record, list):
        return [relabel(value, relabels) for value in record]
    if isinstance(record, str):
        for old, new in relabels:
            record = record.replace(old, new)
    return record


def restripped_record(restrip_dir: str, command: str) -> dict:
    """The checkpoint set to another strip size a stage started from: the command and its restrip.json."""
    return {"command": command, **json.loads((Path(restrip_dir) / "restrip.json").read_text())}


def valid_record(valid_metrics: str) -> dict:
    """The recorded keys (EVAL_KEYS) of a `meterread eval` metrics.json on validation data; raises KeyError when
    one is missing."""
    valid = json.loads(Path(valid_metrics).read_text())
    return {key: valid[key] for key in EVAL_KEYS}


def averaged_record(soup_dir: str, valid_metrics: str, command: str) -> dict:
    """The averaged checkpoint that is bundled: the command, its ingredients and weights, its validation metrics."""
    soup = json.loads((Path(soup_dir) / "soup.json").read_text())
    return {"command": command, **soup, "valid": valid_record(valid_metrics)}


def member_record(target: Path, name: str) -> dict:
    """One reader of a bundled ensemble, from its own provenance.json: its last recipe, stage count and minutes."""
    provenance = json.loads((target / name / "provenance.json").read_text())
    return {
        "name": name,
        "recipe": provenance["recipe"],
        "stages": len(provenance["stages"]),
        "training_minutes_on_2_cpu_cores": provenance["training_minutes_on_2_cpu_cores"],
    }


ENSEMBLE_COMMAND = (
    "make demo-model  # each reader's stages (member-N/provenance.json), `meterread ensemble`, "
    "then `meterread eval --baseline ppocr`"
)


def bundle_ensemble(ensemble_dir: Path, valid_metrics: str, command: str, relabels, target: Path) -> dict:
    """Copy a `meterread ensemble` folder into `target` (its ensemble.json's sources relabelled) and write its
    provenance.json (the join, its members, its validation metrics) and metrics.json; the first member's NOTICE
    travels to the top. Returns the validation metrics."""
    valid = valid_record(valid_metrics)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(ensemble_dir, target)
    manifest = relabel(json.loads((target / ENSEMBLE_FILE).read_text()), relabels)
    (target / ENSEMBLE_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    members = [member_record(target, name) for name in manifest["members"]]
    provenance = {
        "command": ENSEMBLE_COMMAND,
        "ensemble": relabel({"command": command, "members": members, "valid": valid}, relabels),
        "training_minutes_on_2_cpu_cores": round(sum(m["training_minutes_on_2_cpu_cores"] for m in members), 1),
    }
    (target / "provenance.json").write_text(json.dumps(provenance, indent=2))
    (target / "metrics.json").write_text(json.dumps({"valid": valid}, indent=2))
    notice = target / manifest["members"][0] / "NOTICE"
    if notice.is_file():
        shutil.copy2(notice, target / "NOTICE")
    return valid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path, help="where the eval-NAME/ folders of `meterread eval` are")
    parser.add_argument("--eval", nargs=2, action="append", default=[], metavar=("NAME", "DATA_COMMAND"))
    parser.add_argument("--into", type=Path, default=TARGET, help="where to bundle (default: the demo model's folder)")
    parser.add_argument("--ensemble", nargs=3, metavar=("ENSEMBLE_DIR", "VALID_METRICS", "COMMAND"))
    parser.add_argument(
        "--stage", nargs=4, action="append", default=[], metavar=("RECIPE", "RUN_DIR", "MINUTES", "DATA_COMMAND")
    )
    parser.add_argument("--pretrained", nargs=2, metavar=("BASE_DIR", "IMPORT_COMMAND"))
    parser.add_argument("--averaged", nargs=3, metavar=("SOUP_DIR", "VALID_METRICS", "COMMAND"))
    parser.add_argument(
        "--earlier-average", nargs=3, action="append", default=[], metavar=("SOUP_DIR", "VALID_METRICS", "COMMAND")
    )
    parser.add_argument("--earlier-stages", type=Path, metavar="PROVENANCE_JSON")
    parser.add_argument("--restripped", nargs=2, metavar=("RESTRIP_DIR", "COMMAND"))
    parser.add_argument("--relabel", nargs=2, action="append", default=[], metavar=("OLD", "NEW"))
    parser.add_argument(
        "--annotate-only",
        nargs=2,
        metavar=("VALID_METRICS", "CHOSEN_ON"),
        help="leave the bundled weights and stages as they are; record the evaluations and the min_confidence that "
        "VALID_METRICS (a `meterread eval` metrics.json on the last stage's validation set) recommends",
    )
    args = parser.parse_args()
    target = args.into
    relabels = recipe_names(args.relabel)
    evaluations = {name: evaluation_record(args.run_dir, name, data) for name, data in args.eval}  # before rmtree
    evaluations = relabel(evaluations, relabels)
    if target == TARGET and not evaluations:
        parser.error("--eval is required for the demo model: it ships with its evaluations beside PP-OCRv4")
    if args.annotate_only:
        valid_metrics, chosen_on = args.annotate_only
        record_evaluations(target, evaluations, json.loads(Path(valid_metrics).read_text()), chosen_on)
        print(f"recorded {len(args.eval)} evaluations in {target}")
        return
    if args.ensemble:
        if args.stage:
            parser.error("--ensemble bundles readers bundled before: give their stages when bundling each (--into)")
        ensemble_dir, valid_metrics, command = args.ensemble
        valid = bundle_ensemble(Path(ensemble_dir), valid_metrics, command, relabels, target)
        record_evaluations(target, evaluations, valid, "the ensemble on the validation set of stages 2-5")
        print(f"bundled {ensemble_dir} into {target}")
        return
    if not args.stage:
        parser.error("--stage is required unless --annotate-only or --ensemble")
    prior = json.loads(args.earlier_stages.read_text()) if args.earlier_stages else {}
    stages = prior.get("stages", []) + [stage_record(recipe, Path(run), m, data) for recipe, run, m, data in args.stage]
    averaged = averaged_record(*args.averaged) if args.averaged else None
    earlier = prior.get("earlier_averages", []) + ([prior["averaged"]] if "averaged" in prior else [])
    earlier += [averaged_record(*soup) for soup in args.earlier_average]
    pretrained = pretrained_record(*args.pretrained) if args.pretrained else prior.get("pretrained")
    restripped = restripped_record(*args.restripped) if args.restripped else None
    stages, averaged, earlier, restripped, pretrained = (
        relabel(record, relabels) for record in (stages, averaged, earlier, restripped, pretrained)
    )
    best = Path(args.averaged[0]) if args.averaged else Path(args.stage[-1][1]) / "best"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    last_best = Path(args.stage[-1][1]) / "best"
    for name in KEEP:  # an average has no recipe or data of its own: the last stage's (soup.json lists them all)
        source = best / name if (best / name).is_file() else last_best / name
        if not source.is_file():
            continue
        text = source.read_text() if name.endswith(".json") else ""
        if any(old in text for old, _ in relabels):  # e.g. a config naming the earlier bundle as its base
            (target / name).write_text(json.dumps(relabel(json.loads(text), relabels), indent=2))
        else:
            shutil.copy2(source, target / name)
    last = stages[-1]
    if averaged:  # the bundle's metrics.json: what the bundled weights read on the last stage's validation set
        metrics = {"step": last["best_at_step"], "valid": averaged["valid"], "averaged": averaged["ingredients"]}
        (target / "metrics.json").write_text(json.dumps(metrics, indent=2))
    provenance = {
        "recipe": last["recipe"],
        "command": "make demo-model  # every stage below (and the average), then `meterread eval --baseline ppocr`",
        "seed": last["seed"],
        "training_data": last["training_data"],
        "dataset_manifest": last["dataset_manifest"],
        "stages": stages,  # without an average, the last stage's validation metrics are the bundle's metrics.json
        **({"pretrained": pretrained} if pretrained else {}),
        **({"averaged": averaged} if averaged else {}),  # the bundled weights: these stages' best, averaged
        **({"earlier_averages": earlier} if earlier else {}),  # averages a later stage started from
        **({"restripped": restripped} if restripped else {}),  # a checkpoint set to another strip size
        "training_minutes_on_2_cpu_cores": round(sum(stage["training_minutes_on_2_cpu_cores"] for stage in stages), 1),
    }
    (target / "provenance.json").write_text(json.dumps(provenance, indent=2))
    if pretrained:  # weights derived from a published model: its attribution and licence travel with them
        (target / "NOTICE").write_text(NOTICE.format(source=provenance["pretrained"]["source"]))
    valid, chosen_on = last["valid"], "the last stage's validation set"
    if averaged:
        valid, chosen_on = averaged["valid"], "the averaged checkpoint on the last stage's validation set"
    record_evaluations(target, evaluations, valid, chosen_on)
    print(f"bundled {best} into {target}")


if __name__ == "__main__":
    main()
