"""`meterread` command line (Typer). Each command builds the same typed config the flows use."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from meterread.config import DEMO_MODEL_DIR, ConfigError, ReadConfig
from meterread.models.base import ModelSpec
from meterread.synth import ROLL_SHARE

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
) -> ModelSpec:
    return ModelSpec(
        family=family,
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
    model: str | None = typer.Option(None, help="Base model: hub id or local dir (default: bundled demo model)."),
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
    min_confidence: float = typer.Option(0.5, help="Readings below this confidence are flagged."),
    meter_types: str | None = typer.Option(
        None, help="Comma-separated meter types to recognise, e.g. electricity-lcd,gas-mechanical,water-mechanical."
    ),
    task: list[str] | None = typer.Option(
        None, help="Florence-2 task to record per photo (repeatable): <OCR>, <OCR_WITH_REGION>, <OD>, <CAPTION>."
    ),
) -> None:
    """Read every new photo under SOURCE and append one row per photo to the dataset at OUTPUT."""
    from meterread.pipeline import run_read

    spec = model_spec(model, family, adapter, pattern, constrained, device, dtype, compile_model)
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
        ).validate()
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from error
    manifest = run_read(config)
    typer.echo(
        json.dumps(
            {k: manifest[k] for k in ("run_id", "listed", "already_done", "processed", "counts", "manifest_uri")},
            indent=2,
        )
    )


@app.command()
def train(
    recipe: Path = typer.Argument(..., help="Training recipe YAML (see configs/)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. lr=1e-4 lora.rank=16"),
    resume: bool = typer.Option(False, help="Continue from OUTPUT/latest/ (weights, optimizer, step)."),
) -> None:
    """Fine-tune a model on a labelled dataset; writes best/ and latest/ checkpoints."""
    from meterread.train import TrainConfig, TrainConfigError
    from meterread.train import train as run_training

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
) -> None:
    """Exact match, CER, parse rate, risk-coverage and an HTML report for a model on a whole split."""
    from meterread.train import evaluate_split

    spec = model_spec(model, family, adapter, pattern, True, device, "auto")
    metrics = evaluate_split(spec, dataset, split, batch_size, str(out))
    shown = {
        k: metrics[k] for k in ("count", "exact_match", "character_error_rate", "parse_rate", "accuracy_at_coverage")
    }
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
) -> None:
    """Render synthetic meter photos (LCD and counter wheels) in the nightly key layout, with labels."""
    import os

    from meterread.synth import parse_sizes, write_bucket, write_dataset

    workers = workers or os.cpu_count() or 1
    try:
        size = parse_sizes(sizes)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--sizes") from error
    if valid or test:
        result = write_dataset(
            out,
            {"train": n, "valid": valid, "test": test},
            seed,
            size,
            progress=True,
            workers=workers,
            roll_share=roll_share,
        )
        typer.echo(f"wrote {result['counts']} to {out} at {result['images_per_s']:.1f} images/s")
        return
    samples = write_bucket(out, n, seed, size, progress=True, workers=workers, roll_share=roll_share)
    typer.echo(f"wrote {len(samples)} photos and annotations.jsonl to {out}")


@app.command()
def strips(
    source: Path = typer.Argument(
        ..., help="Digit crops: <type>/<model>/<label>_*.jpg (e.g. ../shared/data/meter-digits)."
    ),
    out: Path = typer.Argument(..., help="Dataset folder to write train/ valid/ test/ into."),
    train: int = typer.Option(2000),
    valid: int = typer.Option(200),
    test: int = typer.Option(500),
    digits: int = typer.Option(6, help="Digits per strip."),
    holdout: list[str] = typer.Option([], help="Meter model(s) only in test/, e.g. powermeter/iskra_t3f."),
    seed: int = typer.Option(0),
) -> None:
    """Compose multi-digit reading strips from real digit crops (dataset format, held-out meter models)."""
    from meterread.strips import write_strip_dataset

    counts = write_strip_dataset(source, out, {"train": train, "valid": valid, "test": test}, digits, seed, holdout)
    typer.echo(f"wrote {counts} strips to {out}")


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
