"""Fine-tune flow: train a recipe -> evaluate candidate and current model on the same sets (the recipe's test split
plus extra held-out sets such as the real-meter sets) -> promotion gate on the test split -> publish with a model card.

Run locally:  python -m flows.finetune configs/<recipe>.yaml REGISTRY [name:dataset:split ...]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.nightly_read import show_library_logs
from meterread.config import ModelSpec, TrainConfig
from meterread.training import registry
from meterread.training.evaluation import evaluate_split
from meterread.training.train import inference_spec, train

STORAGE_TASK = {"cache_policy": NO_CACHE}  # no task retries: registry I/O retries per call (with_retries)
GATE_SET = "test"  # the set the promotion gate decides on: the recipe's own test split


@dataclass(frozen=True)
class EvalSet:
    """A held-out set both models are scored on: `split` of the dataset at `dataset` (folder or s3:// prefix)."""

    name: str
    dataset: str
    split: str = "test"


def parse_eval_set(text: str) -> EvalSet:
    """`name:dataset:split` (the Makefile's EVAL_SETS form; the dataset may be an s3:// URL) -> EvalSet. Pure.
    Raises ValueError for another shape or the reserved name `test` (the recipe's test split)."""
    name, _, rest = text.partition(":")
    dataset, _, split = rest.rpartition(":")
    if not (name and dataset and split) or "/" in split:
        raise ValueError(
            f"eval set {text!r} must look like name:dataset:split, e.g. real-strips-seen-models:data/strips-eval:test"
        )
    if name == GATE_SET:
        raise ValueError(f"eval set {text!r}: the name {GATE_SET!r} is the recipe's test split; choose another")
    return EvalSet(name, dataset, split)


@task(cache_policy=NO_CACHE)
def train_recipe(config: TrainConfig) -> dict:
    return train(config, progress=False, log=get_run_logger().info)


@task(cache_policy=NO_CACHE, task_run_name="score-{eval_set.name}-{role}")
def score_set(spec: ModelSpec, eval_set: EvalSet, role: str, output: str) -> dict:
    """The metrics of `spec` on one set (`evaluate_split`, report under OUTPUT/eval-NAME-ROLE/), or, for the
    candidate, `{"missing": why}` when the set's dataset is not present on this worker. The current model is only
    scored on sets the candidate was: a FileNotFoundError there (its weights, say) fails the flow, never lets the
    gate take it for a first promotion."""
    folder = f"{output}/eval-{eval_set.name}-{role}"
    try:
        return evaluate_split(spec, eval_set.dataset, eval_set.split, out_dir=folder, progress=False)
    except FileNotFoundError as error:
        if role != "candidate":
            raise
        return {"missing": str(error)}


@task(**STORAGE_TASK)
def read_current(registry_url: str) -> dict | None:
    return registry.read_current(registry_url)


@task(**STORAGE_TASK)
def current_model(registry_url: str, current: dict, config: TrainConfig, base: str) -> ModelSpec:
    """How to read the registry's current version (a whole model is fetched). A pointer from before versions
    recorded how to load them is read as this recipe's family and strategy on its base."""
    recipe = {"family": config.family, "strategy": config.strategy, "base": base, "pattern": config.pattern}
    facts = {**recipe, **{name: value for name, value in current.items() if value is not None}}
    return registry.loadable_version_spec(ModelSpec(), facts, registry_url)


@task(**STORAGE_TASK)
def publish(registry_url: str, checkpoint: str, record: dict, evaluations: dict, decision: registry.Decision) -> dict:
    return registry.publish(
        registry_url, checkpoint, decision.candidate_score, record=record, evaluations=evaluations, decision=decision
    )


def compare_on_sets(
    candidate: ModelSpec, current: ModelSpec | None, sets: list[EvalSet], output: str, logger
) -> tuple[dict, dict]:
    """Score both models on every set, the same photos for both, one `score_set` task run per set and model
    (`.map`; the flow's task runner runs one at a time: one model in memory): (per-set record for the registry:
    dataset, split, headline metrics of "candidate" and "current", "missing"; the candidate's full metrics on the
    gate set). The gate set must be present (FileNotFoundError); another set that is not is recorded as missing."""
    mine = score_set.map(unmapped(candidate), sets, "candidate", output).result()
    present = [eval_set for eval_set, metrics in zip(sets, mine) if "missing" not in metrics]
    scored = score_set.map(unmapped(current), present, "current", output).result() if current else []
    theirs = dict(zip([eval_set.name for eval_set in present], scored))
    evaluations = {}
    for eval_set, metrics in zip(sets, mine):
        current_metrics = theirs.get(eval_set.name)
        entry = {"dataset": eval_set.dataset, "split": eval_set.split, "candidate": None, "current": None}
        if "missing" in metrics:
            if eval_set.name == GATE_SET:
                raise FileNotFoundError(f"the gate set ({eval_set.dataset} {eval_set.split}): {metrics['missing']}")
            logger.warning("eval set %s not present, not scored: %s", eval_set.name, metrics["missing"])
            evaluations[eval_set.name] = {**entry, "missing": metrics["missing"]}
            continue
        evaluations[eval_set.name] = {
            **entry,
            "candidate": registry.headline(metrics),
            "current": registry.headline(current_metrics) if current_metrics else None,
            "missing": None,
        }
    return evaluations, mine[[s.name for s in sets].index(GATE_SET)]


def record_gate(recipe: str, margin: float, decision: registry.Decision, pointer: dict | None, evaluations: dict):
    """The `promotion-decision` artifact (the gate) and `promotion-evaluations` (both models per set)."""
    create_table_artifact(
        key="promotion-decision",
        table=[
            {
                "promote": decision.promote,
                "reason": decision.reason,
                "candidate_exact_match": decision.candidate_score,
                "current_exact_match": decision.current_score,
                "floor": decision.floor,
                "current_version": (pointer or {}).get("version"),
            }
        ],
        description=f"Promotion gate for {recipe} (test split exact match; margin {margin})",
    )
    create_table_artifact(
        key="promotion-evaluations",
        table=[
            {
                "set": name,
                "data": f"{entry['dataset']} {entry['split']}",
                "photos": (entry["candidate"] or {}).get("count"),
                "candidate_exact_match": (entry["candidate"] or {}).get("exact_match"),
                "current_exact_match": (entry["current"] or {}).get("exact_match"),
                "missing": entry["missing"],
            }
            for name, entry in evaluations.items()
        ],
        description=f"Candidate and current model on the same sets ({recipe}); the gate uses {GATE_SET}",
    )


@flow(name="finetune", task_runner=ThreadPoolTaskRunner(max_workers=1))
def finetune(
    recipe: str,
    registry_url: str,
    overrides: list[str] | None = None,
    margin: float = 0.0,
    floor: float | None = None,
    eval_sets: list[str] | None = None,
) -> dict:
    """Train `recipe` (YAML path + `key=value` overrides), score the candidate and the registry's current model on
    the same sets, and publish the candidate to `registry_url` (with its model card) only if it passes the gate.

    The gate decides on exact match on the recipe's **test split** only: the candidate must reach the floor
    (`floor`; default the current model's score on that split; never below registry.MIN_PROMOTION_FLOOR, so also
    on a first promotion) and beat the current model by `margin`. `eval_sets` (`name:dataset:split`, e.g.
    `real-strips-heldout-models:data/strips-eval:heldout`, the real-meter sets of `make eval-sets`) are scored for
    both models too and recorded per set (artifact, version.json, model card); a set that is not present is
    recorded as missing."""
    logger = get_run_logger()
    show_library_logs()
    config = TrainConfig.from_yaml(recipe, overrides or []).validate()
    sets = [EvalSet(GATE_SET, config.dataset, "test"), *map(parse_eval_set, eval_sets or [])]
    registry.promotion_floor(None, floor)  # a floor outside [0, 1] fails before training
    result = train_recipe(config)
    candidate_spec = inference_spec(config, Path(result["best"]), result["base"])
    current = read_current(registry_url)
    current_spec = current_model(registry_url, current, config, result["base"]) if current else None
    evaluations, candidate = compare_on_sets(candidate_spec, current_spec, sets, config.output, logger)
    current_score = (evaluations[GATE_SET]["current"] or {}).get("exact_match")
    decision = registry.decide(candidate["exact_match"], current_score, margin, floor)
    record = {"base": result["base"], "recipe_file": recipe, "overrides": list(overrides or []), "margin": margin}
    pointer = publish(registry_url, result["best"], record, evaluations, decision) if decision.promote else current
    record_gate(recipe, margin, decision, pointer, evaluations)
    logger.info("promotion decision: %s", decision.reason)
    return {
        "decision": decision.__dict__,
        "pointer": pointer,
        "train": result,
        "candidate": candidate,
        "evaluations": evaluations,
    }


if __name__ == "__main__":
    finetune(recipe=sys.argv[1], registry_url=sys.argv[2], eval_sets=sys.argv[3:])
