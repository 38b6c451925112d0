"""`meterread` commands that make model checkpoints rather than read or train: `tiny`, `import-ppocr`, `average`,
`restrip`, `ensemble` (registered on the main app by `meterread.cli`; heavy imports inside each command)."""

from __future__ import annotations

from pathlib import Path

import typer


def tiny(
    family: str = typer.Argument(..., help="paligemma, florence2 or ppocr"),
    out: Path = typer.Argument(..., help="Directory to save the model and processor into."),
    seed: int = typer.Option(0),
) -> None:
    """Build a tiny random-weight model from config (tests, plumbing checks)."""
    from meterread.models.tiny import build_tiny

    typer.echo(f"saved tiny {family} to {build_tiny(family, out, seed=seed)}")


def import_ppocr(
    out: Path = typer.Argument(..., help="Directory to save the ppocr checkpoint into."),
    image_size: int = typer.Option(96, help="Square input side, folded as two rows (a 48 x 192 strip at 96)."),
    strip_width: int = typer.Option(192, help="Width the strip is read at (width / 8 CTC columns)."),
    # 48 = ppocr_network.STRIP_HEIGHT, written out: importing it would load torch for every `meterread --help`
    strip_height: int = typer.Option(
        48, help="Height the strip is read at (pretrained at 48; a multiple of 16, 32 or more)."
    ),
) -> None:
    """Save PP-OCRv4's recogniser (rapidocr's wheel, Apache-2.0), digits only, as a ppocr checkpoint to train from."""
    from meterread.models.ppocr_import import import_ppocr as save_published

    try:
        saved = save_published(out, image_size=image_size, strip_width=strip_width, strip_height=strip_height)
        typer.echo(f"saved a ppocr checkpoint in {saved}")
    except (ModuleNotFoundError, ValueError) as error:
        raise typer.BadParameter(str(error)) from error


def average(
    out: Path = typer.Argument(..., help="Directory for the averaged checkpoint."),
    checkpoints: list[Path] = typer.Argument(..., help="Two or more full checkpoints of one architecture."),
    weights: str | None = typer.Option(None, help="Comma-separated weight per checkpoint (default: equal)."),
) -> None:
    """Average fine-tuned checkpoints of one lineage into one (a model soup); the last one's settings are kept."""
    from meterread.training.soup import average_checkpoints

    try:
        shares = [float(value) for value in weights.split(",")] if weights else None
        typer.echo(
            f"saved the average of {len(checkpoints)} checkpoints in {average_checkpoints(out, checkpoints, shares)}"
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error


def restrip(
    source: Path = typer.Argument(..., help="A full ppocr checkpoint (a training run's best/, an average)."),
    out: Path = typer.Argument(..., help="Directory for the checkpoint set to the new strip size."),
    strip_width: int = typer.Option(..., help="Width the strip is read at (width / 8 CTC columns)."),
    strip_height: int = typer.Option(..., help="Height the strip is read at (a multiple of 16, 32 or more)."),
    image_size: int | None = typer.Option(
        None, help="Square the photo is folded into first (two rows: (S/2) x 2S); default: the checkpoint's."
    ),
) -> None:
    """Set a ppocr checkpoint to read the strip at another size (same weights), to train on at that size."""
    from meterread.training.restrip import restrip_checkpoint

    try:
        saved = restrip_checkpoint(source, out, strip_width, strip_height, image_size)
        typer.echo(f"saved {source} set to read {strip_height} x {strip_width} strips in {saved}")
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error


def ensemble(
    out: Path = typer.Argument(..., help="New directory for the ensemble."),
    checkpoints: list[Path] = typer.Argument(..., help="Two or more full ppocr checkpoints (squares may differ)."),
    min_confidence: float | None = typer.Option(
        None, help="The ensemble's recommended threshold (measure it on validation data: `meterread eval`)."
    ),
) -> None:
    """Put ppocr checkpoints trained apart into one directory that reads as one model: each reads, and the reading
    all of them find most likely wins (docs/training.md "Two readers, one reading")."""
    from meterread.training.ensemble import build_ensemble

    try:
        saved = build_ensemble(out, checkpoints, min_confidence)
        typer.echo(f"saved an ensemble of {len(checkpoints)} checkpoints in {saved}")
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error


def register(app: typer.Typer) -> None:
    app.command()(tiny)
    app.command(name="import-ppocr")(import_ppocr)
    app.command()(average)
    app.command()(restrip)
    app.command()(ensemble)
