"""Fine-tuning: LoRA / freeze-vision / full, AdamW with warmup + cosine, clipping, accumulation, whole-split
evaluation every epoch, self-describing checkpoints (`best/`, `latest/`) and resume (both in `checkpoints.py`).

Run: `meterread train configs/<recipe>.yaml [key=value ...]`
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from meterread.config import LoraSettings, ModelSpec, TrainConfig, TrainConfigError
from meterread.models.base import TrainableReader
from meterread.models.registry import family_module, load_reader
from meterread.training.augment import augment_batch, step_rng
from meterread.training.checkpoints import (
    check_same_run,
    recover_checkpoints,
    restore,
    resume_point,
    save_checkpoint,
)
from meterread.training.dataset import load_dataset, manifest_digest
from meterread.training.evaluate import summarise
from meterread.training.evaluation import evaluate_reader, prepare_images


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warmup to `base_lr`, then cosine decay to 0 at `total_steps` (steps count from 0)."""
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def lora_targets(family: str, settings: LoraSettings) -> list[str]:
    if settings.targets:
        return list(settings.targets)
    return list(family_module(family).LORA_TARGETS)


def vision_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The image encoder and its projector (a VLM), or the convolutional backbone (a ppocr recogniser), of `model`
    or of the model under its PEFT wrapper: what `freeze-vision` freezes and `vision_lr_scale` slows. Raises
    ValueError for a model without them."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, "model", base)
    names = ("vision_tower", "multi_modal_projector", "backbone")
    found = [getattr(inner, name) for name in names if getattr(inner, name, None) is not None]
    if not found:
        raise ValueError(f"{type(base).__name__} has no vision tower or backbone")
    return found


def apply_strategy(model: torch.nn.Module, family: str, strategy: str, lora: LoraSettings) -> torch.nn.Module:
    """Make exactly the intended parameters trainable (with `requires_grad_`, never a no-op attribute)."""
    if strategy == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora_targets(family, lora)
        )
        return get_peft_model(model, config)  # freezes the base, trains only LoRA weights
    model.requires_grad_(True)
    if strategy == "freeze-vision":
        for module in vision_modules(model):
            module.requires_grad_(False)
    return model


def parameter_groups(model: torch.nn.Module, vision_lr_scale: float) -> list[dict]:
    """The trainable parameters as optimizer groups, each with its `lr_scale`: one group at the full rate, or, below
    1, the vision modules' trainable parameters at `vision_lr_scale` of it and the rest at the full rate. Raises
    TrainConfigError when a scale below 1 would slow nothing (the strategy trains no vision parameter)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if vision_lr_scale == 1.0:
        return [{"params": trainable, "lr_scale": 1.0}]
    vision_ids = {id(p) for module in vision_modules(model) for p in module.parameters()}
    slow = [p for p in trainable if id(p) in vision_ids]
    if not slow:
        raise TrainConfigError(
            f"vision_lr_scale {vision_lr_scale} slows nothing: this strategy trains no vision parameter"
        )
    return [
        {"params": slow, "lr_scale": vision_lr_scale},
        {"params": [p for p in trainable if id(p) not in vision_ids], "lr_scale": 1.0},
    ]


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_spec_for(config: TrainConfig, base: str) -> ModelSpec:
    return ModelSpec(
        family=config.family,
        base=base,
        dtype="float32",
        device=config.device,
        pattern=config.pattern,
        prompt=config.prompt,
    )


def inference_spec(config: TrainConfig, checkpoint: Path, base: str) -> ModelSpec:
    """How to load a checkpoint for reading: base + adapter for LoRA, the checkpoint itself otherwise."""
    if config.strategy == "lora":
        return ModelSpec(
            family=config.family, base=base, adapter=str(checkpoint), pattern=config.pattern, prompt=config.prompt
        )
    return ModelSpec(family=config.family, base=str(checkpoint), pattern=config.pattern, prompt=config.prompt)


def resolve_base(config: TrainConfig, output: Path) -> str:
    """The starting weights: `base`, or a tiny model built from config (once) under `output/init/`."""
    if not config.init_tiny:
        return config.base
    from meterread.models.tiny import TinySize, build_tiny

    init = output / "init"
    if not (init / "config.json").is_file():
        build_tiny(config.family, init, TinySize(**config.init_tiny), seed=config.seed)
    return str(init)


@dataclass
class TrainingRun:
    """One training run's model, data and counters. `state` (step, epoch, best_exact_match, history, seconds) is
    saved beside each checkpoint and restored by `--resume`; plain data only (`checkpoints.load_trainer_state`)."""

    config: TrainConfig
    output: Path
    base: str
    reader: TrainableReader
    manifest: str
    problems: list[str]
    train_images: list
    train_samples: list
    valid_images: list
    valid_samples: list
    optimizer: torch.optim.Optimizer
    parameters: list
    trainable: int
    total: int
    state: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)  # this process's clock; state["seconds"]: earlier

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_images) / (self.config.batch_size * self.config.grad_accum))

    @property
    def total_steps(self) -> int:
        return self.config.max_steps or self.steps_per_epoch * self.config.epochs

    def finished(self) -> bool:
        return self.state["step"] >= self.total_steps

    def due_for_eval(self) -> bool:
        every = self.config.eval_every_steps
        return bool(every) and self.state["step"] % every == 0


def training_mode(model: torch.nn.Module) -> None:
    """`model.train()`, except BatchNorm layers whose weights are frozen (LoRA, `freeze-vision`): they stay in eval
    mode, so their running statistics stay those of the checkpoint, which is what the saved model reads with."""
    model.train()
    for module in model.modules():
        weights = list(module.parameters(recurse=False))
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and weights:
            module.train(any(weight.requires_grad for weight in weights))


def train(config: TrainConfig, progress: bool = True, log=print) -> dict:
    """Run a recipe end to end; returns the summary (best metrics, paths, parameter counts)."""
    from tqdm.auto import tqdm

    run = start_run(config.validate(), progress, log)
    bar = tqdm(total=run.total_steps, initial=run.state["step"], desc="training", unit="step", disable=not progress)
    metrics: dict = {}
    training_mode(run.reader.model)
    while not run.finished():
        for group in epoch_groups(run):
            loss, images_per_s = train_step(run, group)
            bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{images_per_s:.0f}")
            bar.update(1)
            if run.due_for_eval():
                metrics = evaluate_and_save(run, progress, log)
            if run.finished():
                break
        run.state["epoch"] += 1
        if (not run.config.eval_every_steps or run.finished()) and not run.due_for_eval():
            metrics = evaluate_and_save(run, progress, log)  # once per epoch, and always after the last step
    bar.close()
    return summary(run, metrics)


def start_run(config: TrainConfig, progress: bool, log) -> TrainingRun:
    """1. data and model (trainable parameters per strategy), 2. images preprocessed once, 3. the optimiser, then
    the counters: restored from `latest/` (`resume`), else after an optional vision warm start."""
    started = time.perf_counter()
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    for line in recover_checkpoints(output):
        log(line)
    seed_everything(config.seed)
    splits = load_dataset(config.dataset)
    problems = [p for split in splits.values() for p in split.problems]
    for problem in problems:
        log(f"skipped bad annotation: {problem}")
    if not splits["train"].samples:
        raise TrainConfigError(f"no training samples under {config.dataset}/train/{'annotations.jsonl'}")
    manifest = manifest_digest(splits)
    if latest := resume_point(config):
        check_same_run(config, manifest, latest)  # before the model loads and the images are prepared
    base = resolve_base(config, output)
    reader = load_reader(model_spec_for(config, base))
    reader.layout = config.layout  # it trains on inputs shaped by the recipe, whatever its base was saved with
    reader.model = apply_strategy(reader.model, config.family, config.strategy, config.lora)
    trainable, total = count_parameters(reader.model)
    log(f"{config.strategy}: {trainable:,} of {total:,} parameters trainable ({trainable / total:.2%})")
    groups = parameter_groups(reader.model, config.vision_lr_scale)  # refuses a useless scale before preprocessing
    train_images, train_kept, bad_train = prepare_images(splits["train"], reader.image_size, config.layout, progress)
    valid_images, valid_kept, bad_valid = prepare_images(splits["valid"], reader.image_size, config.layout, progress)
    run = TrainingRun(
        config=config,
        output=output,
        base=base,
        reader=reader,
        manifest=manifest,
        problems=problems + bad_train + bad_valid,
        train_images=train_images,
        train_samples=[splits["train"].samples[i] for i in train_kept],
        valid_images=valid_images,
        valid_samples=[splits["valid"].samples[i] for i in valid_kept],
        optimizer=torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay),
        parameters=[p for group in groups for p in group["params"]],
        trainable=trainable,
        total=total,
        started=started,
    )
    run.state = initial_state(run, log)
    return run


def initial_state(run: TrainingRun, log) -> dict:
    config = run.config
    if latest := resume_point(config):
        state = restore(run.reader, run.optimizer, latest)
        log(f"resumed from {latest} at step {state['step']}")
        return state
    state = {"step": 0, "epoch": 0, "best_exact_match": -1.0, "history": [], "seconds": 0.0}
    if config.warm_start_steps:
        from meterread.training.warmstart import warm_start_vision

        labels = [sample.suffix for sample in run.train_samples]
        state["warm_start_accuracy"] = warm_start_vision(
            run.reader,
            run.train_images,
            labels,
            config.warm_start_steps,
            config.warm_start_lr,
            config.warm_start_batch_size,
            config.seed,
            log,
            config.warm_start_head,
        )
    return state


def epoch_groups(run: TrainingRun) -> list[list[np.ndarray]]:
    """This epoch's optimizer steps as groups of `grad_accum` batches of image indices (a seeded shuffle per
    epoch); a resumed run skips the batches its epoch already took."""
    config = run.config
    order = np.random.default_rng(config.seed + run.state["epoch"]).permutation(len(run.train_images))
    skip = (run.state["step"] % run.steps_per_epoch) * config.batch_size * config.grad_accum
    batches = [order[i : i + config.batch_size] for i in range(skip, len(order), config.batch_size)]
    return [batches[start : start + config.grad_accum] for start in range(0, len(batches), config.grad_accum)]


def train_step(run: TrainingRun, group: list[np.ndarray]) -> tuple[float, float]:
    """One optimizer step over `group` (augmented per `config.augment`, gradient accumulation, bf16 autocast on
    CUDA, clipped gradients); returns (loss, images per second)."""
    started = time.perf_counter()
    reader, config = run.reader, run.config
    rate = lr_at(run.state["step"], run.total_steps, config.warmup_steps, config.lr)
    for param_group in run.optimizer.param_groups:
        param_group["lr"] = rate * param_group.get("lr_scale", 1.0)
    on_cuda = reader.model.device.type == "cuda"
    loss_value = 0.0
    rng = step_rng(config.seed, run.state["step"])
    for indices in group:
        batch = reader.training_batch(
            augment_batch([run.train_images[i] for i in indices], rng, config.augment),
            [run.train_samples[i].prefix or reader.default_prompt for i in indices],
            [run.train_samples[i].suffix for i in indices],
        )
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=on_cuda):
            loss = reader.model(**batch).loss / len(group)
        loss.backward()
        loss_value += float(loss.detach())
    torch.nn.utils.clip_grad_norm_(run.parameters, config.max_grad_norm)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.state["step"] += 1
    return loss_value, sum(len(indices) for indices in group) / (time.perf_counter() - started)


def evaluate_and_save(run: TrainingRun, progress: bool, log) -> dict:
    """Score the whole validation split, save `best/` when it improved and `latest/` (weights, metrics, trainer
    state); returns the metrics."""
    reader, state = run.reader, run.state
    reader.model.eval()
    scored = evaluate_reader(reader, run.valid_images, run.valid_samples, run.config.eval_batch_size, progress)
    state["seconds"] = state.get("seconds", 0.0) + time.perf_counter() - run.started
    run.started = time.perf_counter()
    metrics = {
        "step": state["step"],
        "epoch": state["epoch"],
        "wall_minutes": round(state["seconds"] / 60, 1),  # since the run began, resumed runs included
        "valid": summarise(scored),
        "trainable_parameters": run.trainable,
        "total_parameters": run.total,
        "dataset_problems": run.problems,
    }
    state["history"].append({"step": state["step"], "exact_match": metrics["valid"]["exact_match"]})
    exact = metrics["valid"]["exact_match"] or 0.0
    if exact > state["best_exact_match"]:
        state["best_exact_match"] = exact
        save_checkpoint(run.output / "best", reader, run.config, metrics, run.manifest)
    # latest/ after best/, its state holding the best score: a resumed run compares with the best/ it has
    save_checkpoint(run.output / "latest", reader, run.config, metrics, run.manifest, state, run.optimizer)
    log(f"step {state['step']}: valid exact match {exact:.4f} (best {state['best_exact_match']:.4f})")
    training_mode(reader.model)
    return metrics


def summary(run: TrainingRun, metrics: dict) -> dict:
    return {
        "output": str(run.output),
        "best": str(run.output / "best"),
        "latest": str(run.output / "latest"),
        "base": run.base,
        "steps": run.state["step"],
        "best_exact_match": run.state["best_exact_match"],
        "metrics": metrics,
        "trainable_parameters": run.trainable,
        "total_parameters": run.total,
        "dataset_manifest": run.manifest,
    }
