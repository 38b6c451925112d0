"""`meterread` command line (Typer). Each command builds the same typed config the flows use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from meterread.keys import DEFAULT_KEY_PATTERN

# Heavy modules (numpy, OpenCV, pyarrow, torch) are imported inside the commands, so `meterread --help` is instant.
ROLL_SHARE = 0.4  # meterread.data.synth.ROLL_SHARE (a test holds them equal)

if TYPE_CHECKING:
    from meterread.models.base import ModelSpec

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Batch meter reading with fine-tuned VLMs.")


def model_spec(
    model: str | None,
    family: str,
    adapter: str | None,
    pattern: str | None,
    constrained: bool,
    device: str,
    dtype: str,
    compile_model: bool = False,
    prompt: str | None = None,
) -> ModelSpec:
    from meterread.config import DEMO_MODEL_DIR
    from meterread.models.base import ModelSpec

    return ModelSpec(
        family=family,
        prompt=prompt,
        base=model or str(DEMO_MODEL_DIR),
        adapter=adapter,
        pattern=pattern,
        constrained=constrained,
        device=device,
        dtype=dtype,
        compile=compile_model,
    )


@app.command()
def read(
    source: str = typer.Argument(..., help="Folder or URL with photos (file://, s3://bucket/prefix)."),
    output: str = typer.Argument(..., help="Folder or URL of the Parquet dataset."),
    model: str | None = typer.Option(
        None,
        help="Base model: hub id, local dir or registry://URL (default: bundled demo model).",
    ),
    model_registry: str | None = typer.Option(
        None,
        help="Read with this model registry's current version (folder or s3:// prefix); same as "
        "--model registry://URL. Resolved once at the start of the run; recorded in the manifest.",
    ),
    family: str = typer.Option("paligemma", help="Model family: paligemma or florence2."),
    adapter: str | None = typer.Option(None, help="LoRA adapter dir or s3:// URL, merged for inference."),
    pattern: str | None = typer.Option(None, help="Exact reading shape, e.g. 6.1 = 6 digits + 1 decimal."),
    constrained: bool = typer.Option(True, help="Constrain decoding to numbers."),
    device: str = typer.Option("auto", help="auto, cpu or cuda[:N]."),
    dtype: str = typer.Option("auto", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16."),
    compile_model: bool = typer.Option(
        False, "--compile", help="torch.compile with a static KV cache; batches padded to one shape (GPU)."
    ),
    batch_size: int = typer.Option(16, help="Images per model call."),
    shard_size: int = typer.Option(256, help="Photos per shard (one Parquet file per shard and date)."),
    limit: int | None = typer.Option(None, help="Read at most this many new photos."),
    reprocess: bool = typer.Option(False, help="Read photos again even if the output already has them."),
    run_id: str | None = typer.Option(None, help="Run id (default: UTC time + random suffix)."),
    meters_table: str | None = typer.Option(None, help="CSV/Parquet: meter_id, digits, decimals, max_rate_per_day."),
    min_confidence: float | None = typer.Option(
        None, help="Readings below this confidence are flagged (default: the model's recommended threshold, else 0.5)."
    ),
    meter_types: str | None = typer.Option(
        None, help="Comma-separated meter types to recognise, e.g. electricity-lcd,gas-mechanical,water-mechanical."
    ),
    task: list[str] | None = typer.Option(
        None, help="Florence-2 task to record per photo (repeatable): <OCR>, <OCR_WITH_REGION>, <OD>, <CAPTION>."
    ),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="Succeed when SOURCE is missing or has no photo."),
    transient_retries: int = typer.Option(3, help="Later runs that retry a photo whose fetch failed transiently."),
    prefix: list[str] | None = typer.Option(
        None, help="List only keys under this prefix of SOURCE (repeatable; e.g. a date folder 2026-11-26/)."
    ),
    after: str | None = typer.Option(None, help="List only keys after this one (e.g. the last night's last key)."),
    prompt: str | None = typer.Option(None, help="Prompt sent with each image (default: the family's)."),
    key_pattern: str = typer.Option(
        DEFAULT_KEY_PATTERN, help="Regex with named groups meter_id and timestamp, matched against each key."
    ),
) -> None:
    """Read every new photo under SOURCE and append one row per photo to the dataset at OUTPUT."""
    from meterread.config import ConfigError, ReadConfig
    from meterread.models.base import ModelLoadError
    from meterread.read.planning import NothingToRead
    from meterread.read.runner import run_read
    from meterread.training.registry import model_reference

    if model and model_registry:
        raise typer.BadParameter("give --model or --model-registry, not both")
    model = model_reference(model_registry) if model_registry else model
    spec = model_spec(model, family, adapter, pattern, constrained, device, dtype, compile_model, prompt)
    try:
        config = ReadConfig(
            source=source,
            output=output,
            model=spec,
            batch_size=batch_size,
            shard_size=shard_size,
            limit=limit,
            reprocess=reprocess,
            run_id=run_id,
            meters_table=meters_table,
            min_confidence=min_confidence,
            meter_types=tuple(t.strip() for t in meter_types.split(",")) if meter_types else None,
            tasks=tuple(task or ()),
            allow_empty=allow_empty,
            key_pattern=key_pattern,
            transient_retries=transient_retries,
            prefixes=tuple(prefix or ()),
            list_after=after,
        ).validate()
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
    from meterread.training.train import TrainConfig, TrainConfigError
    from meterread.training.train import train as run_training

    try:
        config = TrainConfig.from_yaml(recipe, list(overrides or []) + (["resume=true"] if resume else [])).validate()
    except TrainConfigError as error:
        raise typer.BadParameter(str(error)) from error
    result = run_training(config, log=typer.echo)
    summary = {k: result[k] for k in ("best", "latest", "steps", "best_exact_match", "trainable_parameters")}
    typer.echo(json.dumps(summary, indent=2))


@app.command(name="eval")
def evaluate(
    dataset: str = typer.Argument(..., help="Dataset root with train/ valid/ test/ splits (local or s3://)."),
    model: str | None = typer.Option(None, help="Base model: hub id or local dir (default: bundled demo model)."),
    family: str = typer.Option("paligemma", help="paligemma or florence2."),
    adapter: str | None = typer.Option(None, help="LoRA adapter dir or s3:// URL."),
    split: str = typer.Option("test", help="Split to evaluate."),
    pattern: str | None = typer.Option(None, help="Exact reading shape, e.g. 5.1."),
    batch_size: int = typer.Option(32),
    device: str = typer.Option("auto"),
    out: Path = typer.Option(Path("eval"), help="Folder for metrics.json and report.html."),
    baseline: str | None = typer.Option(None, help="Also read the split with a peer OCR: ppocr (PP-OCRv4)."),
) -> None:
    """Exact match, CER, parse rate, risk-coverage, per meter model and an HTML report for a model on a whole split
    (and, with --baseline, the same for a peer OCR on the same photos)."""
    from meterread.training.evaluation import evaluate_split

    spec = model_spec(model, family, adapter, pattern, True, device, "auto")
    try:
        metrics = evaluate_split(spec, dataset, split, batch_size, str(out), baseline=baseline)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    keys = ("count", "exact_match", "character_error_rate", "parse_rate", "accuracy_at_coverage")
    shown = {k: metrics[k] for k in keys}
    shown["by_meter_model"] = metrics["by_meter_model"]
    if baseline:
        shown["baseline"] = {"name": baseline, **{k: metrics["baseline"][k] for k in keys}}
    typer.echo(json.dumps(shown, indent=2))
    typer.echo(f"report: {out / 'report.html'}")


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Folder to write photos and annotations.jsonl into."),
    n: int = typer.Option(48, help="Number of photos (with --valid/--test: training photos)."),
    seed: int = typer.Option(0, help="Random seed (same seed, same photos)."),
    valid: int = typer.Option(0, help="Also write a valid/ split of this size (then photos go to train/)."),
    test: int = typer.Option(0, help="Also write a test/ split of this size (then photos go to train/)."),
    sizes: str = typer.Option(
        "mixed", help="'mixed' (640x480 .. 2560x1440), WxH, or a comma-separated list, e.g. 640x480,1024x768."
    ),
    workers: int = typer.Option(0, help="Rendering processes (0: one per CPU core); the photos do not depend on it."),
    roll_share: float = typer.Option(
        ROLL_SHARE, min=0.0, max=1.0, help="Share of counter photos whose last wheel is caught rolling."
    ),
    digits: Path | None = typer.Option(
        None, help="Build registers from real digit crops in this folder (<type>/<model>/<label>_*.jpg)."
    ),
    digits_part: str = typer.Option(
        "auto", help="Crop part for --digits: auto (each split its own), train, valid, test or heldout."
    ),
) -> None:
    """Render synthetic meter photos (LCD and counter wheels) in the nightly key layout, with labels."""
    import os

    from meterread.data.synth import parse_sizes, write_bucket, write_dataset

    workers = workers or os.cpu_count() or 1
    try:
        size = parse_sizes(sizes)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--sizes") from error
    source = None
    if digits is not None:
        from meterread.data.crops import PARTS
        from meterread.data.real_photos import DigitSource

        if digits_part not in ("auto", *PARTS):
            raise typer.BadParameter(f"expected auto or one of {PARTS}", param_hint="--digits-part")
        if not digits.is_dir():
            raise typer.BadParameter(f"{digits} is not a folder", param_hint="--digits")
        part = digits_part if digits_part != "auto" or valid or test else "train"
        source = DigitSource(str(digits.resolve()), part)
    if valid or test:
        result = write_dataset(
            out,
            {"train": n, "valid": valid, "test": test},
            seed,
            size,
            progress=True,
            workers=workers,
            roll_share=roll_share,
            digits=source,
        )
        typer.echo(f"wrote {result['counts']} to {out} at {result['images_per_s']:.1f} images/s")
        return
    samples = write_bucket(out, n, seed, size, progress=True, workers=workers, roll_share=roll_share, digits=source)
    typer.echo(f"wrote {len(samples)} photos and annotations.jsonl to {out}")


@app.command()
def strips(
    source: Path = typer.Argument(
        ..., help="Digit crops: <type>/<model>/<label>_*.jpg (e.g. ../shared/data/meter-digits)."
    ),
    out: Path = typer.Argument(..., help="Dataset folder to write train/ valid/ test/ heldout/ into."),
    train: int = typer.Option(2000, help="Strips from the training crops of the seen models."),
    valid: int = typer.Option(200, help="Strips from the seen models' validation crops."),
    test: int = typer.Option(500, help="Strips from the seen models' test crops (never in train or valid)."),
    heldout: int = typer.Option(0, help="Strips from the held-out models only (whole models never in training)."),
    holdout: list[str] = typer.Option(
        None, help="Held-out meter model(s), repeatable (default: lcd/lcd2, powermeter/betar, watermeter/pp)."
    ),
    seed: int = typer.Option(0),
) -> None:
    """Compose reading strips from real digit crops (dataset format, leave-models-out split, manifest.json)."""
    from meterread.data.crops import HELDOUT_MODELS
    from meterread.data.strips import write_strip_dataset

    sizes = {"train": train, "valid": valid, "test": test, "heldout": heldout}
    try:
        counts = write_strip_dataset(source, out, sizes, seed, tuple(holdout or HELDOUT_MODELS))
    except (ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error)) from error
    typer.echo(f"wrote {counts} strips to {out} (splits and crops in {out / 'manifest.json'})")


@app.command()
def mix(
    out: Path = typer.Argument(..., help="Dataset folder to create."),
    sources: list[Path] = typer.Argument(..., help="Datasets to combine (each with train/ valid/ test/)."),
) -> None:
    """Combine datasets (synthetic photos, real-crop strips, real-crop photos) into one, linking, not copying."""
    from meterread.data.mix import mix_datasets

    try:
        counts = mix_datasets(out, sources)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    typer.echo(f"wrote {counts} annotation lines to {out}")


@app.command()
def tiny(
    family: str = typer.Argument(..., help="paligemma or florence2"),
    out: Path = typer.Argument(..., help="Directory to save the model and processor into."),
    seed: int = typer.Option(0),
) -> None:
    """Build a tiny random-weight model from config (tests, plumbing checks)."""
    from meterread.models.tiny import build_tiny

    typer.echo(f"saved tiny {family} to {build_tiny(family, out, seed=seed)}")


@app.command()
def demo(
    workdir: Path = typer.Option(Path("demo"), help="Where the sample bucket and output go."),
    n: int = typer.Option(36, help="Number of sample photos."),
    seed: int = typer.Option(2026, help="Seed for the sample photos."),
) -> None:
    """Synthesise sample photos, run the nightly flow on them with the bundled model, print a summary."""
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


review_app = typer.Typer(
    no_args_is_help=True,
    help="The review round trip: the review queue out (Label Studio, CSV), corrections in, a training dataset.",
)
app.add_typer(review_app, name="review")


@review_app.command("export")
def review_export(
    output: str = typer.Argument(..., help="Folder or URL of the Parquet dataset."),
    directory: str = typer.Argument(..., help="Folder or URL for tasks.json, label_config.xml and review.csv."),
    limit: int | None = typer.Option(None, min=1, help="Export only the first N photos of the queue (newest first)."),
) -> None:
    """Write OUTPUT's review queue as Label Studio tasks (the model's reading prefilled) and a plain CSV."""
    from meterread.review.store import export_review

    typer.echo(json.dumps(export_review(output, directory, limit), indent=2))


@review_app.command("import")
def review_import(
    output: str = typer.Argument(..., help="Folder or URL of the Parquet dataset."),
    file: str = typer.Argument(
        ..., help="A Label Studio JSON export, or the review CSV with corrected_reading filled in."
    ),
    reviewer: str | None = typer.Option(None, help="Who reviewed, for rows that do not say (CSV `reviewer` empty)."),
) -> None:
    """Check every reviewed row of FILE and append them to OUTPUT/_corrections/; any problem: nothing is written."""
    from meterread.review.records import ReviewImportError
    from meterread.review.store import import_review

    try:
        result = import_review(output, file, reviewer)
    except ReviewImportError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(json.dumps(result, indent=2))


@review_app.command("dataset")
def review_dataset(
    output: str = typer.Argument(..., help="Folder or URL of the Parquet dataset."),
    directory: str = typer.Argument(..., help="Dataset folder or URL to write train/ valid/ test/ into."),
) -> None:
    """Turn OUTPUT's corrections into a train/valid/test dataset (photos + annotations.jsonl) for `meterread train`."""
    from meterread.review.store import write_review_dataset

    manifest = write_review_dataset(output, directory)
    typer.echo(json.dumps(manifest, indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
