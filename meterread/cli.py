"""`meterread` command line (Typer). Each command builds the same typed settings the flows take
(`meterread.config`): option defaults and help are the settings' own fields, declared once there. The dataset
commands (`meterread.data.commands`) and the checkpoint commands (`meterread.training.commands`) register here."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from meterread.config import ConfigError, ModelSpec, ReadConfig
from meterread.data.commands import register as register_dataset_commands
from meterread.review.cli import review_app
from meterread.settings import set_dotted
from meterread.training.commands import register as register_checkpoint_commands

# Heavy modules (numpy, OpenCV, pyarrow, torch) are imported inside the commands, so `meterread --help` is instant.

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Batch meter reading with fine-tuned VLMs.")

# CLI option -> the setting it sets (dotted: inside `model`). Only options given on the command line are applied,
# over the settings file; `key=value` overrides come last.
READ_OPTIONS = {
    "family": "model.family",
    "adapter": "model.adapter",
    "pattern": "model.pattern",
    "constrained": "model.constrained",
    "device": "model.device",
    "dtype": "model.dtype",
    "compile_model": "model.compile",
    "prompt": "model.prompt",
    "batch_size": "batch_size",
    "shard_size": "shard_size",
    "limit": "limit",
    "reprocess": "reprocess",
    "run_id": "run_id",
    "meters_table": "meters_table",
    "min_confidence": "min_confidence",
    "allow_empty": "allow_empty",
    "transient_retries": "transient_retries",
    "after": "list_after",
    "key_pattern": "key_pattern",
}


def setting(settings: type, name: str, *flags: str, **extra) -> typer.models.OptionInfo:
    """A Typer option whose default and help are the field `name` of `settings` (a `meterread.config` model)."""
    field = settings.model_fields[name]
    return typer.Option(field.default, *flags, help=field.description, **extra)


def given_settings(ctx: typer.Context, options: dict[str, str]) -> dict:
    """The settings the options given on the command line set (not those left at their defaults), nested."""
    values: dict = {}
    for option, key in options.items():
        source = ctx.get_parameter_source(option)  # typer vendors click: compare by name, not by enum member
        if source is not None and source.name != "DEFAULT":
            set_dotted(values, key, ctx.params[option])
    return values


@app.command()
def read(
    ctx: typer.Context,
    source: str = typer.Argument(..., help=ReadConfig.model_fields["source"].description),
    output: str = typer.Argument(..., help=ReadConfig.model_fields["output"].description),
    overrides: list[str] = typer.Argument(None, help="key=value settings, e.g. batch_size=8 model.pattern=6.1"),
    config_file: Path | None = typer.Option(
        None, "--config", help="YAML file of read settings (meterread.config.ReadConfig); options and key=value win."
    ),
    model: str | None = typer.Option(None, help=ModelSpec.model_fields["base"].description),
    model_registry: str | None = typer.Option(
        None,
        help="Read with this model registry's current version (folder or s3:// prefix); same as "
        "--model registry://URL. Resolved once at the start of the run; recorded in the manifest.",
    ),
    family: str | None = setting(ModelSpec, "family"),
    adapter: str | None = setting(ModelSpec, "adapter"),
    pattern: str | None = setting(ModelSpec, "pattern"),
    constrained: bool = setting(ModelSpec, "constrained", "--constrained/--no-constrained"),
    device: str = setting(ModelSpec, "device"),
    dtype: str = setting(ModelSpec, "dtype"),
    compile_model: bool = setting(ModelSpec, "compile", "--compile"),
    prompt: str | None = setting(ModelSpec, "prompt"),
    batch_size: int = setting(ReadConfig, "batch_size"),
    shard_size: int = setting(ReadConfig, "shard_size"),
    limit: int | None = setting(ReadConfig, "limit"),
    reprocess: bool = setting(ReadConfig, "reprocess", "--reprocess/--no-reprocess"),
    run_id: str | None = setting(ReadConfig, "run_id"),
    meters_table: str | None = setting(ReadConfig, "meters_table"),
    min_confidence: float | None = setting(ReadConfig, "min_confidence"),
    meter_types: str | None = typer.Option(
        None, help="Comma-separated meter types to recognise, e.g. electricity-lcd,gas-mechanical,water-mechanical."
    ),
    task: list[str] | None = typer.Option(
        None, help="Florence-2 task to record per photo (repeatable): <OCR>, <OCR_WITH_REGION>, <OD>, <CAPTION>."
    ),
    allow_empty: bool = setting(ReadConfig, "allow_empty", "--allow-empty"),
    transient_retries: int = setting(ReadConfig, "transient_retries"),
    prefix: list[str] | None = typer.Option(
        None, help="List only keys under this prefix of SOURCE (repeatable; e.g. a date folder 2026-11-26/)."
    ),
    after: str | None = setting(ReadConfig, "list_after"),
    key_pattern: str = setting(ReadConfig, "key_pattern"),
) -> None:
    """Read every new photo under SOURCE and append one row per photo to the dataset at OUTPUT."""
    from meterread.models.base import ModelLoadError
    from meterread.models.references import model_reference
    from meterread.read.planning import NothingToRead
    from meterread.read.runner import run_read

    if model and model_registry:
        raise typer.BadParameter("give --model or --model-registry, not both")
    values = {"source": source, "output": output, **given_settings(ctx, READ_OPTIONS)}
    if model or model_registry:
        set_dotted(values, "model.base", model_reference(model_registry) if model_registry else model)
    if meter_types:
        values["meter_types"] = [t.strip() for t in meter_types.split(",")]
    values |= {"tasks": task} if task else {}
    values |= {"prefixes": prefix} if prefix else {}
    try:
        config = ReadConfig.from_yaml(config_file, overrides or (), **values).validate()
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from error
    try:
        manifest = run_read(config)
    except (NothingToRead, ConfigError, ModelLoadError) as error:  # nothing was written
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(
        json.dumps(
            {k: manifest[k] for k in ("run_id", "listed", "already_done", "processed", "counts", "manifest_uri")},
            indent=2,
        )
    )


@app.command()
def unlock(
    output: str = typer.Argument(..., help="Folder or URL of the Parquet dataset whose run lease to remove."),
    force: bool = typer.Option(False, "--force", help="Also when the holder's process still runs on this host."),
) -> None:
    """Remove OUTPUT's run lease left by a crashed run, saying who held it (a live holder is refused)."""
    from meterread.read.lease import RunLocked, break_lease, describe_holder
    from meterread.storage import resolve

    fs, root = resolve(output)
    try:
        holder = break_lease(fs, root, force=force)
    except RunLocked as error:
        typer.echo(f"Error: {error} (--force removes it anyway)", err=True)
        raise typer.Exit(1) from error
    if holder is None:
        typer.echo(f"no run holds {output}: nothing to unlock")
    else:
        typer.echo(f"removed the lease of {describe_holder(holder)} on {output}")


@app.command()
def train(
    recipe: Path = typer.Argument(..., help="Training recipe YAML (see configs/)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. lr=1e-4 lora.rank=16"),
    resume: bool = typer.Option(False, help="Continue from OUTPUT/latest/ (weights, optimizer, step)."),
) -> None:
    """Fine-tune a model on a labelled dataset; writes best/ and latest/ checkpoints."""
    from meterread.config import TrainConfig, TrainConfigError
    from meterread.training.train import train as run_training

    try:
        config = TrainConfig.from_yaml(recipe, list(overrides or []) + (["resume=true"] if resume else [])).validate()
        result = run_training(config, log=typer.echo)  # refuses what the recipe cannot train (no data, a resume)
    except TrainConfigError as error:
        raise typer.BadParameter(str(error)) from error
    summary = {k: result[k] for k in ("best", "latest", "steps", "best_exact_match", "trainable_parameters")}
    typer.echo(json.dumps(summary, indent=2))


@app.command(name="eval")
def evaluate(
    dataset: str = typer.Argument(..., help="Dataset root with train/ valid/ test/ splits (local or s3://)."),
    model: str | None = typer.Option(None, help=ModelSpec.model_fields["base"].description),
    family: str | None = typer.Option(None, help=ModelSpec.model_fields["family"].description),
    adapter: str | None = setting(ModelSpec, "adapter"),
    split: str = typer.Option("test", help="Split to evaluate."),
    pattern: str | None = setting(ModelSpec, "pattern"),
    batch_size: int = typer.Option(32, help="Images per model call."),
    device: str = setting(ModelSpec, "device"),
    out: Path = typer.Option(Path("eval"), help="Folder for metrics.json, report.html and predictions.parquet."),
    baseline: str | None = typer.Option(None, help="Also read the split with a peer OCR: ppocr (PP-OCRv4)."),
    known_register: bool = typer.Option(
        False,
        "--known-register",
        help="Read each photo constrained to its label's register (digits and decimals), as a night reads a meter "
        "whose register the meters table holds.",
    ),
) -> None:
    """Exact match, CER, parse rate, risk-coverage, per meter model and an HTML report for a model on a whole split
    (and, with --baseline, the same for a peer OCR on the same photos)."""
    from meterread.training.evaluation import evaluate_split

    chosen = {"family": family, "base": model, "adapter": adapter, "pattern": pattern, "device": device}
    try:
        spec = ModelSpec.from_mapping({key: value for key, value in chosen.items() if value is not None}).validate()
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    try:
        metrics = evaluate_split(
            spec, dataset, split, batch_size, str(out), baseline=baseline, known_register=known_register
        )
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    keys = ("count", "exact_match", "digits_exact_match", "character_error_rate", "parse_rate", "accuracy_at_coverage")
    shown = {k: metrics[k] for k in keys} | {"by_meter_model": metrics["by_meter_model"]}
    if baseline:
        shown["baseline"] = {"name": baseline, **{k: metrics["baseline"][k] for k in keys}}
    typer.echo(json.dumps(shown, indent=2))
    typer.echo(f"report: {out / 'report.html'}; one row per image: {out / 'predictions.parquet'}")


@app.command()
def demo(
    workdir: Path = typer.Option(Path("demo"), help="Where the sample bucket and output go."),
    n: int = typer.Option(36, help="Number of sample photos."),
    seed: int = typer.Option(2026, help="Seed for the sample photos."),
) -> None:
    """Synthesise sample photos, read them with the bundled model (the library's read path, no Prefect server;
    `make demo` runs the same through the nightly-read flow), print a summary and the accuracy on real pixels."""
    from meterread.demo import run_demo

    run_demo(workdir, n, seed)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def bench(ctx: typer.Context) -> None:
    """Measure preprocessing, model-only and end-to-end throughput and peak memory, in one run.

    Options are those of `python -m meterread.bench` (see `meterread bench --help`): one definition, which also
    runs on GPU machines without Typer."""
    from meterread.bench import main as bench_main

    bench_main(list(ctx.args))


@app.command()
def tables(
    output: str = typer.Argument(..., help="Folder or URL of the Parquet dataset."),
    meters_table: str | None = typer.Option(None, help="CSV/Parquet meters table (its `digits` make rollovers usage)."),
) -> None:
    """Recompute the analyst tables (readings_current, consumption_daily, review_queue) into OUTPUT/_tables/, under
    the output's lease (a night updating them meanwhile would lose its buckets)."""
    from meterread.read import lease
    from meterread.read.meters import MetersTableError
    from meterread.read.planning import new_run_id
    from meterread.storage import resolve
    from meterread.tables.store import refresh_tables

    fs, root = resolve(output)
    try:
        held = lease.acquire(fs, root, f"tables-{new_run_id()}")
    except lease.RunLocked as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(1) from error
    try:
        written = refresh_tables(output, meters_table)
    except MetersTableError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(1) from error
    finally:
        lease.release(held)
    typer.echo(json.dumps({name: table.num_rows for name, table in written.items()}, indent=2))


app.add_typer(review_app, name="review")
register_dataset_commands(app)  # synth, strips, mix
register_checkpoint_commands(app)  # tiny, import-ppocr, average


main = app  # the console script (`meterread`)


if __name__ == "__main__":
    main()
