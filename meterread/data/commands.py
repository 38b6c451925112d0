"""`meterread` commands that make datasets: `synth` (synthetic photos, with real digit crops or not), `strips`
(real-crop reading strips), `mix` (datasets combined by links). Registered on the main app by `meterread.cli`; heavy
imports inside each command, so `meterread --help` loads no numpy."""

from __future__ import annotations

from pathlib import Path

import typer

ROLL_SHARE = 0.4  # meterread.data.synth.ROLL_SHARE (a test holds them equal)


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
    recolour: float = typer.Option(
        0.0, min=0.0, max=1.0, help="With --digits: share of training registers in a random ink/paper palette."
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
        try:
            source = DigitSource(str(digits.resolve()), part, recolour=recolour)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--recolour") from error
    if recolour and not (source and n):
        raise typer.BadParameter(
            "paints training photos of real crops: needs --digits DIR, --n > 0", param_hint="--recolour"
        )
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
    font_makes: int = typer.Option(
        0, help="Also train on this many made-up meter models rendered from fonts (train only; docs/training.md)."
    ),
    font_crops: int = typer.Option(500, help="Digit crops rendered per font make."),
    font_share: float | None = typer.Option(
        None, help="Share of training strips drawn from font makes, strictly between 0 and 1 (default: by crops)."
    ),
    fonts_dir: list[Path] = typer.Option(
        None, help="Take font makes' TrueType fonts only from this folder, repeatable (default: the machine's fonts)."
    ),
    recolour: float = typer.Option(
        0.0, help="Share of training strips repainted in a random ink/paper palette, 0 to 1 (train only)."
    ),
    loose: float = typer.Option(
        0.0, help="Share of training LCD strips whose crops show slices of their neighbours, 0 to 1 (train only)."
    ),
    rolled_last: float | None = typer.Option(
        None, help="Share of training counter strips whose last wheel is caught rolling, 0 to 1 (default 0.35)."
    ),
    restyle: float = typer.Option(
        0.0, help="Share of training strips redrawn in one random stroke weight and slant, 0 to 1 (train only)."
    ),
    seed: int = typer.Option(0),
) -> None:
    """Compose reading strips from real digit crops (dataset format, leave-models-out split, manifest.json)."""
    from meterread.data.crops import HELDOUT_MODELS
    from meterread.data.strips import write_strip_dataset

    sizes = {"train": train, "valid": valid, "test": test, "heldout": heldout}
    try:
        counts = write_strip_dataset(
            source,
            out,
            sizes,
            seed,
            tuple(holdout or HELDOUT_MODELS),
            font_makes,
            font_crops,
            font_share,
            tuple(str(folder) for folder in fonts_dir) if fonts_dir else None,
            recolour,
            loose,
            rolled_last,
            restyle,
        )
    except (ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error)) from error
    typer.echo(f"wrote {counts} strips to {out} (splits and crops in {out / 'manifest.json'})")


def mix(
    out: Path = typer.Argument(..., help="Dataset folder to create."),
    sources: list[Path] = typer.Argument(
        ..., help="Datasets to combine (each with train/ valid/ test/; a flat one is all training)."
    ),
    validation_only: bool = typer.Option(False, help="No training split needed (an evaluation set of valid/ splits)."),
) -> None:
    """Combine datasets (synthetic photos, real-crop strips, real-crop photos) into one, linking, not copying."""
    from meterread.data.mix import mix_datasets

    try:
        counts = mix_datasets(out, sources, require_train=not validation_only)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    typer.echo(f"wrote {counts} annotation lines to {out}")


def register(app: typer.Typer) -> None:
    app.command()(synth)
    app.command()(strips)
    app.command()(mix)
