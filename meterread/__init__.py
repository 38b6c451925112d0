"""meterread: batch meter reading with fine-tuned vision-language models.

The library is usable without Prefect, s3fs or Typer: only `flows/` and `meterread.cli` import them.
"""

__version__ = "0.1.0"
