"""`meterread` command line (Typer). Each command builds the same typed config the flows use."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from meterread.config import DEMO_MODEL_DIR, ConfigError, ReadConfig
from meterread.models.base import ModelSpec

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Batch meter reading with fine-tuned VLMs.")


def model_spec(
    model: str | None, family: str, adapter: str | None, pattern: str | None, constrained: bool, device: str, dtype: str
) -> ModelSpec:
    return ModelSpec(
        family=family,
        base=model or str(DEMO_MODEL_DIR),
        adapter=adapter,
        pattern=pattern,
        constrained=constrained,
        device=device,
        dtype=dtype,
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

    spec = model_spec(model, family, adapter, pattern, constrained, device, dtype)
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
def synth(
    out: Path = typer.Argument(..., help="Folder to write photos and annotations.jsonl into."),
    n: int = typer.Option(48, help="Number of photos."),
    seed: int = typer.Option(0, help="Random seed (same seed, same photos)."),
) -> None:
    """Render synthetic meter photos in the nightly key layout, with labels."""
    from meterread.synth import write_bucket

    samples = write_bucket(out, n, seed)
    typer.echo(f"wrote {len(samples)} photos and annotations.jsonl to {out}")


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
