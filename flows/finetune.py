"""Fine-tune flow: train a recipe -> evaluate candidate and current model on the test split -> promotion gate.

Run locally:  python -m flows.finetune configs/<recipe>.yaml REGISTRY
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.nightly_read import show_library_logs
from meterread import registry
from meterread.evaluation import evaluate_split
from meterread.models.base import ModelSpec
from meterread.models.loading import fetch_directory
from meterread.train import TrainConfig, inference_spec, train

STORAGE_TASK = {"cache_policy": NO_CACHE}  # no task retries: registry I/O retries per call (with_retries)


@task(cache_policy=NO_CACHE)
def train_recipe(config: TrainConfig) -> dict:
    return train(config, progress=False, log=get_run_logger().info)


@task(cache_policy=NO_CACHE)
def score_on_test(spec: ModelSpec, dataset: str, out_dir: str) -> dict:
    return evaluate_split(spec, dataset, "test", out_dir=out_dir, progress=False)


@task(**STORAGE_TASK)
def read_current(registry_url: str) -> dict | None:
    return registry.read_current(registry_url)


@task(**STORAGE_TASK)
def publish(registry_url: str, checkpoint: str, score: float) -> dict:
    return registry.publish(registry_url, checkpoint, score)


@flow(name="finetune")
def finetune(recipe: str, registry_url: str, overrides: list[str] | None = None, margin: float = 0.0) -> dict:
    """Train `recipe` (YAML path + `key=value` overrides), then publish its best checkpoint to `registry_url` only if
    it beats the registry's current model on the test split by `margin` (exact match)."""
    logger = get_run_logger()
    show_library_logs()
    config = TrainConfig.from_yaml(recipe, overrides or []).validate()
    result = train_recipe(config)
    candidate_spec = inference_spec(config, Path(result["best"]), result["base"])
    candidate = score_on_test(candidate_spec, config.dataset, f"{config.output}/eval-candidate")
    current = read_current(registry_url)
    current_score = None
    if current:
        current_spec = (
            ModelSpec(family=config.family, base=result["base"], adapter=current["path"], pattern=config.pattern)
            if config.strategy == "lora"
            else ModelSpec(
                family=config.family,
                base=fetch_directory(current["path"], "config.json", wanted=None),  # a whole model: every file
                pattern=config.pattern,
            )
        )
        current_score = score_on_test(current_spec, config.dataset, f"{config.output}/eval-current")["exact_match"]
    decision = registry.decide(candidate["exact_match"], current_score, margin)
    pointer = publish(registry_url, result["best"], candidate["exact_match"]) if decision.promote else current
    create_table_artifact(
        key="promotion-decision",
        table=[
            {
                "promote": decision.promote,
                "reason": decision.reason,
                "candidate_exact_match": decision.candidate_score,
                "current_exact_match": decision.current_score,
                "current_version": (pointer or {}).get("version"),
            }
        ],
        description=f"Promotion gate for {recipe} (margin {margin})",
    )
    logger.info("promotion decision: %s", decision.reason)
    return {"decision": decision.__dict__, "pointer": pointer, "train": result, "candidate": candidate}


if __name__ == "__main__":
    finetune(recipe=sys.argv[1], registry_url=sys.argv[2])
