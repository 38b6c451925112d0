"""Model registry: a folder or s3:// prefix of versioned checkpoints with a `current.json` pointer.

    {registry}/versions/{version}/...            adapter or model, processor, metrics, recipe (copied from a checkpoint)
    {registry}/versions/{version}/version.json   the version's record: how to load it (family, strategy, base,
                                                 pattern, prompt), data manifest, scores per evaluated set, gate
    {registry}/versions/{version}/README.md      its model card (`model_card`)
    {registry}/current.json                      {"version", "score", "metric", "promoted_at", "path", "family",
                                                  "strategy", "base", "pattern", "prompt"}

Readers follow the registry through a model reference in a model spec's `base`: `registry://URL` is the registry's
current version, `registry://URL@VERSION` one fixed version. A run resolves it once, at its start (`resolve_spec`).

Promotion is gated (`decide`): a candidate replaces `current` only if it reaches an absolute floor (never below
MIN_PROMOTION_FLOOR) and beats the current model on the same test split by a margin.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from meterread.config import ModelSpec
from meterread.models.base import ModelLoadError
from meterread.models.references import model_reference, parse_reference
from meterread.models.registry import ENSEMBLE_FILE, is_ensemble
from meterread.storage import resolve, with_retries, write_bytes

POINTER = "current.json"
VERSION_RECORD = "version.json"
MODEL_CARD = "README.md"
MIN_PROMOTION_FLOOR = 0.9  # exact match on the test split below which no model reaches production
LOAD_FACTS = ("family", "strategy", "base", "pattern", "prompt")  # what a reader needs to load a version
ENSEMBLE_STRATEGY = "ensemble"  # a version that is whole models read as one (`meterread ensemble`)
HEADLINE = ("count", "exact_match", "character_error_rate", "parse_rate", "accuracy_at_coverage")


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate_score: float | None
    current_score: float | None
    floor: float | None = None  # the floor the candidate had to reach


def promotion_floor(current: float | None, floor: float | None = None) -> float:
    """The exact match a candidate must reach to be promoted at all: `floor` when given, else the current model's
    score on the same set, and never below MIN_PROMOTION_FLOOR. Pure. Raises ValueError for a floor outside [0, 1]."""
    if floor is not None and not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be within [0, 1] (got {floor})")
    chosen = floor if floor is not None else current
    return max(MIN_PROMOTION_FLOOR, chosen if chosen is not None else MIN_PROMOTION_FLOOR)


def decide(candidate: float | None, current: float | None, margin: float, floor: float | None = None) -> Decision:
    """Promote a candidate that reaches `promotion_floor(current, floor)` and either has no current model to beat
    (first promotion) or beats it by at least `margin`. Both scores are exact match on one and the same set. Pure."""
    least = promotion_floor(current, floor)
    if candidate is None:
        return Decision(False, "candidate has no score", candidate, current, least)
    if candidate < least:
        why = "the given floor" if floor is not None else "the current model's score" if current is not None else ""
        bound = f"max({MIN_PROMOTION_FLOOR}, {why})" if why else f"MIN_PROMOTION_FLOOR {MIN_PROMOTION_FLOOR}"
        reason = f"candidate {candidate:.4f} is below the floor {least:.4f} ({bound}): not promoted"
        return Decision(False, reason, candidate, current, least)
    if current is None:
        reason = f"no current model: first promotion (candidate {candidate:.4f} >= floor {least:.4f})"
        return Decision(True, reason, candidate, current, least)
    if candidate >= current + margin:
        reason = f"candidate {candidate:.4f} >= current {current:.4f} + margin {margin}"
        return Decision(True, reason, candidate, current, least)
    reason = f"candidate {candidate:.4f} < current {current:.4f} + margin {margin}"
    return Decision(False, reason, candidate, current, least)


def version_spec(spec: ModelSpec, facts: Mapping, registry: str) -> ModelSpec:
    """The concrete spec that reads the registry version `facts` describes (its current.json or version.json): a
    LoRA version is its recorded base plus itself as adapter, any other strategy a whole model (its folder is the
    base). Family from the version; pattern and prompt from `spec` where given, else the version's (no pattern
    when `spec` reads unconstrained: there is none to hold); dtype, device and decoding from `spec`; `reference`
    pinned to the version. Pure. Raises ModelLoadError when the version does not record how to load it."""
    lora = facts.get("strategy") == "lora"
    missing = [name for name in ("version", "path", "family", "strategy") + ("base",) * lora if not facts.get(name)]
    if missing:
        raise ModelLoadError(
            f"model registry {registry}: version {facts.get('version')} records no {', '.join(missing)} (published "
            "before meterread recorded how to load a version): publish it again, or give a fixed model as model.base"
        )
    return spec.replace(
        family=facts["family"],
        base=facts["base"] if lora else facts["path"],
        adapter=facts["path"] if lora else None,
        pattern=spec.pattern if spec.pattern is not None else (facts.get("pattern") if spec.constrained else None),
        prompt=spec.prompt if spec.prompt is not None else facts.get("prompt"),
        reference=model_reference(registry, facts["version"]),
    )


def resolve_spec(spec: ModelSpec) -> ModelSpec:
    """The spec a run reads with: `spec` itself unless its base is a model reference, else the concrete spec of the
    version it names (`version_spec`), a whole model fetched into the local cache where remote (every file). Reads
    `current.json` (a pinned `registry://URL@VERSION`: that version's `version.json`), so call it once at the start
    of a run and pass the result on. Raises ModelLoadError naming the registry when it has no such model."""
    parsed = parse_reference(spec.base)
    if parsed is None:
        return spec
    registry, version = parsed
    facts = read_version(registry, version) if version else read_current(registry)
    if facts is None:
        missing = f"no version {version} ({VERSION_RECORD} missing)" if version else f"no current model (no {POINTER})"
        raise ModelLoadError(
            f"model registry {registry} has {missing}: promote a model with the finetune flow, or give a fixed model "
            "(hub id or folder) as model.base"
        )
    return loadable_version_spec(spec, facts, registry)


def loadable_version_spec(spec: ModelSpec, facts: Mapping, registry: str) -> ModelSpec:
    """`version_spec`, with a whole model's folder made local: fetched into the cache (every file) when remote, its
    `file://` prefix dropped otherwise (an adapter is fetched when it loads). Raises ModelLoadError, or
    FileNotFoundError for a version folder without config.json (an ensemble's: without ensemble.json)."""
    concrete = version_spec(spec, facts, registry)
    if concrete.adapter:
        return concrete
    from meterread.models.loading import fetch_directory

    marker = ENSEMBLE_FILE if facts.get("strategy") == ENSEMBLE_STRATEGY else "config.json"
    return concrete.replace(base=fetch_directory(concrete.base, marker, wanted=None))


def run_model_fields(spec: ModelSpec) -> dict:
    """What a run manifest records of a resolved spec's reference: `model_reference` (`registry://URL`, the
    registry a run follows) and `model_version` (the version it read); both None for a fixed model. Pure."""
    registry, version = parse_reference(spec.reference) or (None, None)
    return {"model_reference": model_reference(registry) if registry else None, "model_version": version}


def shard_model_settings(spec: ModelSpec) -> dict:
    """The `model` setting that makes a run on another machine read the same version as resolved `spec`: its base
    pinned to that version (`registry://URL@VERSION`, resolved again there: a whole model in the cache of this
    machine is no path on that one). Empty for a fixed model (the settings as given already name it). Pure."""
    if spec.reference is None:
        return {}
    return {"model": {**spec.model_dump(), "base": spec.reference, "adapter": None, "reference": None}}


def _read_json(registry: str, relative: str) -> dict | None:
    fs, root = resolve(registry)
    fs.invalidate_cache(root)
    path = f"{root}/{relative}"
    return with_retries(lambda: json.loads(fs.cat_file(path)) if fs.exists(path) else None)


def read_current(registry: str) -> dict | None:
    """The registry's `current.json` pointer, or None when nothing was promoted yet."""
    return _read_json(registry, POINTER)


def read_version(registry: str, version: str) -> dict | None:
    """A version's record (`versions/{version}/version.json`), or None when there is none."""
    return _read_json(registry, f"versions/{version}/{VERSION_RECORD}")


def headline(metrics: Mapping) -> dict:
    """The figures of an evaluation (`evaluate_split`) that a version's record and card keep. Pure."""
    return {name: metrics.get(name) for name in HEADLINE}


def read_checkpoint_record(checkpoint: Path) -> dict:
    """What a checkpoint says of itself: its recipe (`train_config.json`), preprocessing and recommended
    `min_confidence` (`meterread.json`), best-checkpoint metrics and dataset manifest digest. Missing files: empty.
    An ensemble has no recipe of its own (each member has one): its family comes from `ensemble.json`, its
    strategy is ENSEMBLE_STRATEGY."""

    def load(name: str) -> dict:
        path = checkpoint / name
        return json.loads(path.read_text()) if path.is_file() else {}

    recipe, settings, metrics = load("train_config.json"), load("meterread.json"), load("metrics.json")
    if is_ensemble(checkpoint):
        recipe = {"family": load(ENSEMBLE_FILE).get("model_type"), "strategy": ENSEMBLE_STRATEGY}
    return {
        **{name: recipe.get(name) or None for name in LOAD_FACTS},
        "min_confidence": settings.get("min_confidence"),
        "preprocessing": {k: v for k, v in settings.items() if k != "min_confidence"},
        "dataset": recipe.get("dataset"),
        "dataset_manifest": load("dataset_manifest.json").get("digest"),
        "recipe": recipe,
        "training": {k: metrics.get(k) for k in ("step", "epoch", "wall_minutes")}
        | {"valid_exact_match": (metrics.get("valid") or {}).get("exact_match")},
    }


def publish(
    registry: str,
    checkpoint: str | Path,
    score: float,
    metric: str = "exact_match",
    record: Mapping | None = None,
    evaluations: Mapping[str, Mapping] | None = None,
    decision: Decision | None = None,
) -> dict:
    """Copy a checkpoint into `versions/{version}/` with its record (`version.json`) and model card (`README.md`),
    then point `current.json` at it; returns the pointer. The record is what the checkpoint says of itself
    (`read_checkpoint_record`) overlaid with `record` (e.g. the `base` it was trained from), `evaluations` (per
    set: {"dataset", "split", "candidate": headline, "current": headline or None, "missing": why or None}) and the
    gate's `decision`. The pointer moves last, so a reader never follows it to a half-written version. An ensemble
    (`meterread ensemble`) is published whole, members and all."""
    fs, root = resolve(registry)
    version = datetime.now(timezone.utc).strftime("v%Y%m%dT%H%M%S%fZ")
    target = f"{root}/versions/{version}"
    for path in sorted(Path(checkpoint).rglob("*")):
        if path.is_file() and path.name != "trainer_state.pt":
            write_bytes(fs, f"{target}/{path.relative_to(checkpoint).as_posix()}", path.read_bytes())
    pointer = {
        "version": version,
        "score": score,
        "metric": metric,
        "path": fs.unstrip_protocol(target),
        "promoted_at": datetime.now(timezone.utc).isoformat(),
    }
    full = {**read_checkpoint_record(Path(checkpoint)), **(record or {}), **pointer}
    full |= {"reference": model_reference(registry, version), "evaluations": dict(evaluations or {})}
    full["decision"] = asdict(decision) if decision else None
    pointer |= {name: full.get(name) for name in LOAD_FACTS}
    write_bytes(fs, f"{target}/{VERSION_RECORD}", json.dumps(full, indent=2, default=str).encode())
    write_bytes(fs, f"{target}/{MODEL_CARD}", model_card(full).encode())
    write_bytes(fs, f"{root}/{POINTER}", json.dumps(pointer, indent=2).encode())
    return pointer


def model_card(record: Mapping) -> str:
    """The model card (`README.md`) of a version, from its record (`publish`): how to read with it, base, family,
    strategy, data, metrics per evaluated set, recommended `min_confidence`, how it was trained, the gate's
    decision. Pure."""
    sections = [
        _card_model(record),
        _card_data(record),
        _card_metrics(record.get("evaluations") or {}),
        _card_training(record.get("recipe") or {}, record.get("training") or {}, record),
        _card_decision(record.get("decision")),
    ]
    return "\n\n".join(sections) + "\n"


def _figure(value, percent: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value:.2%}" if percent and isinstance(value, float) else str(value)


def _card_model(record: Mapping) -> str:
    lora = record.get("strategy") == "lora"
    registry, version = parse_reference(record.get("reference")) or (None, record.get("version"))
    threshold = record.get("min_confidence")
    rows = [
        ("family", record.get("family")),
        ("base model", record.get("base")),
        (
            "strategy",
            f"{record.get('strategy')} ({'LoRA adapter on the base, merged at load' if lora else 'whole model'})",
        ),
        ("reading pattern", record.get("pattern") or "any number"),
        ("prompt", record.get("prompt") or "the family's default"),
        (
            "recommended `min_confidence`",
            f"{threshold} (`meterread.json`)" if threshold is not None else "none recorded: runs use 0.5 unless set",
        ),
        ("promoted at", record.get("promoted_at")),
        ("folder", record.get("path")),
    ]
    usage = (
        f"Read with it: `model.base: {model_reference(registry)}` (follows the registry's current version) or "
        f"`{model_reference(registry, version)}` (this version only)."
        if registry
        else ""
    )
    table = "\n".join(["| | |", "|---|---|"] + [f"| {name} | {_figure(value, False)} |" for name, value in rows])
    return f"# Meter reader {version}\n\n{table}\n\n{usage}".rstrip()


def _card_data(record: Mapping) -> str:
    return (
        "## Data\n\n"
        f"Dataset `{record.get('dataset') or '-'}`; manifest digest `{record.get('dataset_manifest') or '-'}` "
        "(a hash of every split's annotation files, `dataset_manifest.json`: the exact labelled data trained on)."
    )


def _card_metrics(evaluations: Mapping) -> str:
    head = [
        "## Metrics\n",
        "Exact match on the parsed reading per evaluated set, candidate beside the model it replaced (same photos, "
        "same run). The promotion gate uses `test`.\n",
        "| set | data | photos | exact match | CER | parse rate | accuracy at 95% coverage | replaced model |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for name, result in evaluations.items():
        where = f"`{result.get('dataset')}` {result.get('split')}"
        if result.get("missing"):
            rows.append(f"| {name} | {where} | not present: {result['missing']} | | | | | |")
            continue
        mine, theirs = result.get("candidate") or {}, result.get("current") or {}
        coverage = (mine.get("accuracy_at_coverage") or {}).get("0.95")
        rows.append(
            f"| {name} | {where} | {_figure(mine.get('count'))} | {_figure(mine.get('exact_match'))} | "
            f"{_figure(mine.get('character_error_rate'))} | {_figure(mine.get('parse_rate'))} | {_figure(coverage)} | "
            f"{_figure(theirs.get('exact_match'))} |"
        )
    return "\n".join(head + (rows or ["| (none recorded) | | | | | | | |"]))


RECIPE_SUMMARY = (
    "epochs", "max_steps", "batch_size", "grad_accum", "lr", "vision_lr_scale", "warmup_steps", "weight_decay",
    "max_grad_norm", "seed", "warm_start_steps", "warm_start_head", "crop_display", "display_rows", "local_contrast",
    "init_tiny",
)  # fmt: skip


def _card_training(recipe: Mapping, training: Mapping, record: Mapping) -> str:
    settings = {name: recipe[name] for name in RECIPE_SUMMARY if recipe.get(name) is not None}
    if recipe.get("strategy") == "lora" and recipe.get("lora"):
        settings["lora"] = {k: v for k, v in recipe["lora"].items() if v is not None}
    if recipe.get("batch_size"):
        settings["effective batch"] = recipe["batch_size"] * (recipe.get("grad_accum") or 1)
    best = (
        f"Best checkpoint (by validation exact match) at step {training.get('step')}, epoch {training.get('epoch')}: "
        f"validation exact match {_figure(training.get('valid_exact_match'))}; {training.get('wall_minutes')} minutes "
        "of training."
        if training.get("step") is not None
        else "No training metrics recorded."
    )
    source = record.get("recipe_file")
    command = f"Recipe `{source}`, overrides {list(record.get('overrides') or [])}.\n\n" if source else ""
    lines = [f"| {name} | {value} |" for name, value in settings.items()]
    table = "\n".join(["| setting | value |", "|---|---|", *lines]) if lines else "No recipe recorded."
    return f"## How it was trained\n\n{command}{table}\n\n{best}"


def _card_decision(decision: Mapping | None) -> str:
    if not decision:
        return "## Promotion\n\nPublished without a gate decision."
    candidate, current = _figure(decision.get("candidate_score")), _figure(decision.get("current_score"))
    return (
        "## Promotion\n\n"
        f"{'Promoted' if decision.get('promote') else 'Not promoted'}: {decision.get('reason')} (test exact match: "
        f"candidate {candidate}, replaced model {current}, floor {_figure(decision.get('floor'))})."
    )
