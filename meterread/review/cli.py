"""`meterread review export|import|dataset`: the review round trip on the command line (a Typer sub-app)."""

from __future__ import annotations

import json

import typer

review_app = typer.Typer(
    no_args_is_help=True,
    help="The review round trip: the review queue out (Label Studio, CSV), corrections in, a training dataset.",
)


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
