"""Training on a tiny model and dataset: strategies, schedule, train -> checkpoint -> resume -> eval -> promote."""

import json
from pathlib import Path

import pytest
import torch

from meterread.config import LoraSettings, ModelSpec, TrainConfig, TrainConfigError
from meterread.data.synth import write_dataset
from meterread.models.registry import load_reader
from meterread.training.evaluation import evaluate_split
from meterread.training.registry import decide, publish, read_current
from meterread.training.train import (
    apply_strategy,
    count_parameters,
    inference_spec,
    lr_at,
    parameter_groups,
    train,
    training_mode,
    vision_modules,
)

FAMILIES = ["paligemma", "florence2"]


@pytest.mark.parametrize("family", FAMILIES)
def test_trainable_parameter_counts_per_strategy(request, family):
    def fresh():
        return load_reader(ModelSpec(family=family, base=request.getfixturevalue(f"tiny_{family}"), device="cpu")).model

    full_trainable, total = count_parameters(apply_strategy(fresh(), family, "full", LoraSettings()))
    assert full_trainable == total
    model = fresh()
    vision = sum(
        p.numel() for name, p in model.named_parameters() if "vision_tower" in name or "multi_modal_projector" in name
    )
    frozen_trainable, _ = count_parameters(apply_strategy(model, family, "freeze-vision", LoraSettings()))
    assert vision > 0 and frozen_trainable == total - vision
    lora_model = apply_strategy(fresh(), family, "lora", LoraSettings(rank=4))
    lora_trainable, lora_total = count_parameters(lora_model)
    lora_names = [n for n, p in lora_model.named_parameters() if p.requires_grad]
    assert lora_names and all("lora_" in n for n in lora_names)
    assert lora_trainable == sum(p.numel() for n, p in lora_model.named_parameters() if "lora_" in n)
    assert 0 < lora_trainable < 0.2 * lora_total


@pytest.mark.parametrize("strategy", ["full", "freeze-vision", "lora"])
def test_frozen_batchnorm_keeps_the_checkpoints_statistics_in_training(tiny_ppocr, strategy):
    model = load_reader(ModelSpec(family="ppocr", base=tiny_ppocr, device="cpu")).model
    model = apply_strategy(model, "ppocr", strategy, LoraSettings(rank=4))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    before = [norm.running_mean.clone() for norm in norms]
    training_mode(model)
    model(pixel_values=torch.randn(2, 3, 48, 64) * 3 + 1)  # a batch unlike the checkpoint's statistics
    moved = [not torch.equal(norm.running_mean, mean) for norm, mean in zip(norms, before)]
    trained = [norm.weight.requires_grad for norm in norms]
    assert model.training and moved == trained == [norm.training for norm in norms]
    # full: every layer learns; freeze-vision: the backbone's stem is frozen, the neck learns; lora: all frozen
    assert any(trained) if strategy != "lora" else not any(trained)
    assert all(trained) if strategy == "full" else not all(trained)


def test_vision_lr_scale_puts_the_backbone_in_its_own_slower_group(tiny_ppocr):
    model = apply_strategy(
        load_reader(ModelSpec(family="ppocr", base=tiny_ppocr, device="cpu")).model, "ppocr", "full", LoraSettings()
    )
    (single,) = parameter_groups(model, 1.0)
    assert single["lr_scale"] == 1.0 and len(single["params"]) == len(list(model.parameters()))
    slow, fast = parameter_groups(model, 0.25)
    backbone = {id(p) for module in vision_modules(model) for p in module.parameters()}
    assert slow["lr_scale"] == 0.25 and {id(p) for p in slow["params"]} == backbone
    assert fast["lr_scale"] == 1.0 and fast["params"] and not backbone & {id(p) for p in fast["params"]}


def test_vision_lr_scale_reaches_the_vision_tower_under_a_peft_wrapper_and_refuses_to_slow_nothing(
    tiny_paligemma, tiny_ppocr
):
    def fresh(family, base):
        return load_reader(ModelSpec(family=family, base=base, device="cpu")).model

    wrapped = apply_strategy(fresh("paligemma", tiny_paligemma), "paligemma", "lora", LoraSettings(rank=4))
    slow, fast = parameter_groups(wrapped, 0.5)  # SigLIP's attention and MLP carry LoRA weights too
    assert slow["params"] and all(p.requires_grad for p in slow["params"] + fast["params"])
    neck_only = apply_strategy(fresh("ppocr", tiny_ppocr), "ppocr", "lora", LoraSettings(rank=4))
    with pytest.raises(TrainConfigError, match="slows nothing"):
        parameter_groups(neck_only, 0.5)


@pytest.mark.parametrize(("scale", "strategy"), [(0.0, "full"), (-0.5, "full"), (1.5, "full"), (0.5, "freeze-vision")])
def test_vision_lr_scale_outside_zero_to_one_or_beside_a_frozen_tower_is_refused(scale, strategy):
    config = TrainConfig(family="ppocr", base="b", dataset="d", output="o", vision_lr_scale=scale, strategy=strategy)
    with pytest.raises(TrainConfigError, match="vision_lr_scale"):
        config.validate()


def test_warmup_then_cosine_schedule():
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0) == pytest.approx(0.5)
    assert lr_at(100, 100, 10, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert all(lr_at(s, 100, 0, 1.0) >= lr_at(s + 1, 100, 0, 1.0) for s in range(100))


RECIPES = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe_path", RECIPES, ids=lambda path: path.name)
def test_every_shipped_recipe_validates_with_the_command_in_its_header(recipe_path):
    """Each recipe's first line is the command that runs it; its overrides must make a valid config."""
    command = recipe_path.read_text().splitlines()[0].lstrip("# ").split()
    assert command[:3] == ["meterread", "train", f"configs/{recipe_path.name}"], command
    config = TrainConfig.from_yaml(recipe_path, command[3:]).validate()
    assert config.dataset and config.output


def test_recipe_overrides_and_unknown_keys(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("family: paligemma\nbase: x\ndataset: d\noutput: o\nlora: {rank: 8}\n")
    config = TrainConfig.from_yaml(recipe, ["lr=1e-4", "lora.rank=16", "epochs=3"])
    assert (config.lr, config.lora.rank, config.epochs) == (1e-4, 16, 3)
    with pytest.raises(TrainConfigError, match="unknown training setting"):
        TrainConfig.from_yaml(recipe, ["learning_rate=1"])
    with pytest.raises(TrainConfigError, match="unknown lora setting"):
        TrainConfig.from_yaml(recipe, ["lora.rnak=1"])
    with pytest.raises(TrainConfigError, match="strategy"):
        TrainConfig.from_yaml(recipe, ["strategy=qlora"]).validate()


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    write_dataset(root, {"train": 16, "valid": 8, "test": 8}, seed=5, size=(320, 240))
    with open(root / "train" / "annotations.jsonl", "a") as handle:
        handle.write("this line is broken\n")
    return str(root)


def recipe(tmp_path, dataset, **overrides):
    values = {
        "family": "paligemma",
        "init_tiny": {"image_size": 64, "patch_size": 16},
        "dataset": dataset,
        "output": str(tmp_path / "run"),
        "strategy": "lora",
        "lr": 1e-3,
        "batch_size": 8,
        "epochs": 1,
        "eval_batch_size": 8,
        "crop_display": True,
        "seed": 3,
        **overrides,
    }
    return TrainConfig.from_mapping(values).validate()


def test_train_checkpoint_resume_eval_promote(tmp_path, tiny_dataset):
    logs = []
    config = recipe(tmp_path, tiny_dataset)
    first = train(config, progress=False, log=logs.append)
    best, latest = tmp_path / "run" / "best", tmp_path / "run" / "latest"
    for checkpoint in (best, latest):
        for name in (
            "adapter_model.safetensors",
            "adapter_config.json",
            "processor_config.json",
            "meterread.json",
            "train_config.json",
            "metrics.json",
            "dataset_manifest.json",
        ):
            assert (checkpoint / name).is_file(), (checkpoint, name)
    metrics = json.loads((latest / "metrics.json").read_text())
    assert metrics["valid"]["count"] == 8  # the whole validation split, every time
    assert any("line 17: not JSON" in problem for problem in metrics["dataset_problems"])
    assert any("skipped bad annotation" in line for line in logs)
    assert first["steps"] == 2 and json.loads((best / "meterread.json").read_text()) == {
        "crop_display": True,
        "display_rows": 1,
        "local_contrast": False,
    }

    first_seconds = torch.load(latest / "trainer_state.pt", weights_only=False)["seconds"]
    resumed = train(recipe(tmp_path, tiny_dataset, epochs=2, resume=True), progress=False, log=logs.append)
    assert resumed["steps"] == 4 and any("resumed from" in line for line in logs)
    state = torch.load(latest / "trainer_state.pt", weights_only=False)
    assert state["step"] == 4 and len(state["history"]) == 2
    assert 0 < first_seconds < state["seconds"]  # the run's clock goes on across a resume
    assert json.loads((latest / "metrics.json").read_text())["wall_minutes"] == round(state["seconds"] / 60, 1)

    spec = inference_spec(config, best, first["base"])
    report_dir = tmp_path / "eval"
    scores = evaluate_split(spec, tiny_dataset, "test", out_dir=str(report_dir), progress=False)
    assert scores["count"] == 8 and 0 <= scores["exact_match"] <= 1 and scores["parse_rate"] == 1.0
    assert set(scores["accuracy_at_coverage"]) == {"0.90", "0.95", "0.99"}
    assert (report_dir / "metrics.json").is_file() and "<svg" in (report_dir / "report.html").read_text()

    registry = str(tmp_path / "registry")
    assert read_current(registry) is None
    assert scores["exact_match"] < 0.9 and not decide(scores["exact_match"], None, 0.0).promote  # below the floor
    pointer = publish(registry, best, scores["exact_match"], record={"base": first["base"]})
    assert read_current(registry)["version"] == pointer["version"]
    assert (pointer["strategy"], pointer["base"]) == ("lora", first["base"])  # how to load it (train_config.json)
    assert not decide(0.95, 0.94, margin=0.02).promote and decide(0.96, 0.94, margin=0.02).promote
    assert not decide(None, 0.1, 0.0).promote
    assert not list((tmp_path / "registry").rglob("trainer_state.pt"))
    reloaded = load_reader(ModelSpec(base=first["base"], adapter=pointer["path"], device="cpu"))
    plain = load_reader(ModelSpec(base=first["base"], device="cpu"))
    assert reloaded.layout.crop_display is True and reloaded.fingerprint != plain.fingerprint  # the adapter counts


@pytest.mark.slow
def test_a_tiny_model_memorises_a_tiny_dataset(tmp_path, tiny_dataset):
    """From scratch (vision warm start, then full training) a tiny model must learn to read its 16 training photos:
    image features reach the decoder and the loop, labels and decoding agree."""
    config = recipe(
        tmp_path,
        tiny_dataset,
        strategy="full",
        lr=2e-3,
        epochs=150,
        warmup_steps=20,
        batch_size=8,
        warm_start_steps=150,
        warm_start_batch_size=16,
        eval_every_steps=10_000,
        init_tiny={"image_size": 64, "patch_size": 8, "vision_hidden": 64, "text_hidden": 64},
    )
    train(config, progress=False, log=lambda _: None)
    spec = inference_spec(config, tmp_path / "run" / "latest", str(tmp_path / "run" / "init"))
    scores = evaluate_split(spec, tiny_dataset, "train", progress=False)
    assert scores["exact_match"] >= 0.9, scores["worst"][:3]


def test_full_fine_tune_resumes_with_the_saved_weights(tmp_path, tiny_dataset):
    """Full checkpoints are saved in checkpoint key format; resuming must map them back (it once refused)."""
    from meterread.training.checkpoints import STATE_FILE, restore
    from meterread.training.train import model_spec_for

    config = recipe(tmp_path, tiny_dataset, strategy="full")
    train(config, progress=False, log=lambda *_: None)
    latest = tmp_path / "run" / "latest"
    reader = load_reader(model_spec_for(config, str(tmp_path / "run" / "init")))
    optimizer = torch.optim.AdamW(reader.model.parameters())
    state = restore(reader, optimizer, latest)
    saved = type(reader.model).from_pretrained(latest).state_dict()
    assert all(torch.equal(value, saved[name]) for name, value in reader.model.state_dict().items())
    assert state["step"] == 2 and (latest / STATE_FILE).is_file()
    logs = []
    resumed = train(
        recipe(tmp_path, tiny_dataset, strategy="full", epochs=2, resume=True), progress=False, log=logs.append
    )
    assert resumed["steps"] == 4 and any("resumed from" in line for line in logs)


def test_a_save_killed_while_writing_leaves_the_previous_latest_and_the_rerun_resumes_from_it(
    tmp_path, tiny_dataset, monkeypatch
):
    import meterread.training.checkpoints as checkpoints
    from meterread.training.checkpoints import STATE_FILE, load_trainer_state

    train(recipe(tmp_path, tiny_dataset), progress=False, log=lambda *_: None)
    latest = tmp_path / "run" / "latest"
    weights = (latest / "adapter_model.safetensors").read_bytes()

    def killed(*_):
        raise KeyboardInterrupt("killed while saving")

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints, "save_trainer_state", killed)
        with pytest.raises(KeyboardInterrupt):
            train(recipe(tmp_path, tiny_dataset, epochs=2, resume=True), progress=False, log=lambda *_: None)
    assert load_trainer_state(latest / STATE_FILE)["step"] == 2  # not the weights of step 4 with the state of 2
    assert (latest / "adapter_model.safetensors").read_bytes() == weights
    assert (tmp_path / "run" / "latest.partial").is_dir()
    logs = []
    resumed = train(recipe(tmp_path, tiny_dataset, epochs=2, resume=True), progress=False, log=logs.append)
    assert resumed["steps"] == 4 and not (tmp_path / "run" / "latest.partial").exists()
    assert any(line.startswith("removed") and "latest.partial" in line for line in logs)
    assert any("resumed from" in line and "at step 2" in line for line in logs)


def test_the_resume_state_holds_the_best_score_best_holds(tmp_path, tiny_dataset):
    """Saved before best/ was updated, a resumed run once compared with an older score and could replace a better
    best/ with a worse one."""
    from meterread.training.checkpoints import STATE_FILE, load_trainer_state

    train(recipe(tmp_path, tiny_dataset), progress=False, log=lambda *_: None)
    state = load_trainer_state(tmp_path / "run" / "latest" / STATE_FILE)
    best = json.loads((tmp_path / "run" / "best" / "metrics.json").read_text())
    assert state["best_exact_match"] == best["valid"]["exact_match"] >= 0


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, tiny_dataset):
    """Another start, other inputs or other data would continue another run under this one's name; more epochs
    (and other schedule settings) continue this one."""
    import shutil

    from meterread.training.train import start_run

    train(recipe(tmp_path, tiny_dataset), progress=False, log=lambda *_: None)
    other = tmp_path / "other-data"
    shutil.copytree(tiny_dataset, other)
    lines = (other / "train" / "annotations.jsonl").read_text().splitlines(keepends=True)
    (other / "train" / "annotations.jsonl").write_text("".join(lines[:-1]))
    quiet = {"progress": False, "log": lambda *_: None}
    with pytest.raises(TrainConfigError, match="cannot resume .*latest: .*dataset manifest"):
        start_run(recipe(tmp_path, str(other), resume=True), **quiet)
    with pytest.raises(TrainConfigError, match="crop_display True -> False"):
        start_run(recipe(tmp_path, tiny_dataset, crop_display=False, resume=True), **quiet)
    with pytest.raises(TrainConfigError, match="lora .*'rank': 8.* -> .*'rank': 4"):
        start_run(recipe(tmp_path, tiny_dataset, lora={"rank": 4}, resume=True), **quiet)
    saved = tmp_path / "run" / "latest" / "train_config.json"  # as a run saved before `local_contrast` existed
    saved.write_text(json.dumps({k: v for k, v in json.loads(saved.read_text()).items() if k != "local_contrast"}))
    assert start_run(recipe(tmp_path, tiny_dataset, epochs=2, lr=5e-4, resume=True), **quiet).state["step"] == 2


def test_resume_refuses_another_run_before_preparing_any_image(tmp_path, tiny_dataset, monkeypatch):
    import meterread.training.train as training

    train(recipe(tmp_path, tiny_dataset), progress=False, log=lambda *_: None)
    monkeypatch.setattr(training, "prepare_images", lambda *_: pytest.fail("prepared images before refusing"))
    with pytest.raises(TrainConfigError, match="init_tiny"):
        training.start_run(
            recipe(tmp_path, tiny_dataset, init_tiny={"image_size": 64, "patch_size": 8}, resume=True),
            progress=False,
            log=lambda *_: None,
        )


def test_a_training_step_moves_the_vision_modules_at_their_share_of_the_rate(tmp_path, tiny_dataset):
    from meterread.training.train import epoch_groups, evaluate_and_save, start_run, train_step

    config = recipe(tmp_path, tiny_dataset, strategy="full", vision_lr_scale=0.25, warmup_steps=4)
    run = start_run(config, progress=False, log=lambda *_: None)
    train_step(run, epoch_groups(run)[0])
    slow, fast = run.optimizer.param_groups
    assert fast["lr"] == pytest.approx(lr_at(0, run.total_steps, 4, config.lr)) and fast["lr"] > 0
    assert slow["lr"] == pytest.approx(0.25 * fast["lr"])
    vision = {id(p) for module in vision_modules(run.reader.model) for p in module.parameters()}
    assert {id(p) for p in slow["params"]} == vision
    evaluate_and_save(run, progress=False, log=lambda *_: None)  # latest/ with two optimizer groups
    with pytest.raises(TrainConfigError, match="cannot resume .* with vision_lr_scale 1.0"):
        start_run(recipe(tmp_path, tiny_dataset, strategy="full", resume=True), progress=False, log=lambda *_: None)
    resumed = start_run(
        recipe(tmp_path, tiny_dataset, strategy="full", vision_lr_scale=0.5, resume=True),
        progress=False,
        log=lambda *_: None,
    )
    assert [group["lr_scale"] for group in resumed.optimizer.param_groups] == [0.5, 1.0]  # the recipe's, not saved


def test_column_warm_start_trains_the_frozen_vision_tower_then_freezes_it_again(tmp_path, tiny_dataset):
    """`warm_start_head: columns` runs CTC over an 8 x 8 token grid (16 frames: every tiny reading fits; a 4 x 4
    grid is refused) before LoRA training; the vision tower LoRA leaves frozen is trained there and frozen again."""
    from meterread.training.train import start_run

    logs = []
    grid = {"init_tiny": {"image_size": 128, "patch_size": 16}}
    config = recipe(tmp_path, tiny_dataset, warm_start_steps=3, warm_start_batch_size=4, warm_start_head="columns",
                    **grid)  # fmt: skip
    run = start_run(config, progress=False, log=logs.append)
    assert any(line.startswith("vision warm start (columns) 3/3: loss") for line in logs), logs
    assert 0.0 <= run.state["warm_start_accuracy"] <= 1.0
    vision = [p for name, p in run.reader.model.named_parameters() if "vision_tower" in name and "lora_" not in name]
    assert vision and not any(p.requires_grad for p in vision)
