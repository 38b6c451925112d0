"""Typed settings for a nightly read, checked up front. One config, shared by the CLI and the Prefect flow."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from meterread.keys import DEFAULT_KEY_PATTERN, compile_key_pattern
from meterread.models.base import ModelSpec
from meterread.models.patterns import ReadingPattern
from meterread.preprocess import DEFAULT_MAX_PIXELS
from meterread.read.sink import READING_DECIMALS, READING_INTEGER_DIGITS, READING_TYPE, check_safe_name

DEMO_MODEL_DIR = Path(__file__).parent / "assets" / "demo-model"


class ConfigError(ValueError):
    """A setting that cannot work; the message says which and how to fix it."""


def reject_unknown_keys(values: Mapping, settings_type, what: str, error: type[Exception] = ConfigError) -> None:
    """Raise `error` naming every key of `values` that is not a field of the dataclass `settings_type`."""
    known = {f.name for f in dataclasses.fields(settings_type)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise error(f"unknown {what} setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def check_pattern_fits(pattern: str | None) -> list[str]:
    """Problems with a reading `pattern` whose readings the output's `reading` column could not hold exactly
    (found after inference otherwise: a failed write, or silently rounded decimals). A malformed pattern is left
    to `ModelSpec.validate`."""
    try:
        shape = ReadingPattern.parse(pattern)
    except ValueError:
        return []
    problems = []
    if (shape.integer_digits or 0) > READING_INTEGER_DIGITS:
        problems.append(
            f"pattern {pattern!r} has {shape.integer_digits} integer digits; the reading column ({READING_TYPE}) "
            f"holds at most {READING_INTEGER_DIGITS}"
        )
    if (shape.decimals or 0) > READING_DECIMALS:
        problems.append(
            f"pattern {pattern!r} has {shape.decimals} decimals; the reading column ({READING_TYPE}) holds "
            f"{READING_DECIMALS}, more would be rounded"
        )
    return problems


def location(url: str) -> tuple[str, str]:
    """(protocol, absolute path) of an fsspec URL or local path, for comparing places; touches no storage."""
    protocol, sep, rest = url.partition("://")
    if not sep or protocol == "file":
        local = rest if sep else url
        return "file", os.path.realpath(os.path.expanduser(local)).rstrip("/") or "/"
    return {"s3a": "s3"}.get(protocol, protocol), rest.strip("/")


def nesting(source: str, output: str) -> str | None:
    """Why SOURCE and OUTPUT cannot be used together when one lies inside the other, else None: the output's
    files would be listed as photos, or the photos read as stray files of the dataset."""
    (source_protocol, source_path), (output_protocol, output_path) = location(source), location(output)
    if source_protocol != output_protocol:
        return None
    if output_path == source_path:
        return f"output {output} is the same place as source {source}: output must differ from source"
    if output_path.startswith(source_path.rstrip("/") + "/"):
        return f"output {output} lies inside source {source}: give an output outside the photos' folder or prefix"
    if source_path.startswith(output_path.rstrip("/") + "/"):
        return f"source {source} lies inside output {output}: keep the photos outside the dataset's folder or prefix"
    return None


def default_model() -> ModelSpec:
    return ModelSpec(family="paligemma", base=str(DEMO_MODEL_DIR))


DEFAULT_MIN_CONFIDENCE = 0.5  # for a model that recommends no threshold


def effective_min_confidence(given: float | None, recommended: float | None) -> float:
    """The threshold a run uses: the one given, else the model's recommendation, else DEFAULT_MIN_CONFIDENCE."""
    if given is not None:
        return given
    return recommended if recommended is not None else DEFAULT_MIN_CONFIDENCE


@dataclass(frozen=True)
class ReadConfig:
    """Everything a read run needs. `source`/`output`/`meters_table` are fsspec URLs or local paths."""

    source: str
    output: str
    model: ModelSpec = field(default_factory=default_model)
    batch_size: int = 16
    shard_size: int = 256
    limit: int | None = None
    reprocess: bool = False
    run_id: str | None = None
    key_pattern: str = DEFAULT_KEY_PATTERN
    meters_table: str | None = None
    min_confidence: float | None = None  # None: the model's recommended threshold, else DEFAULT_MIN_CONFIDENCE
    max_pixels: int = DEFAULT_MAX_PIXELS
    storage_attempts: int = 4
    transient_retries: int = 3  # later runs that retry a photo whose read failed transiently (storage, timeout)
    preprocess_workers: int = 2
    prefetch_batches: int = 2  # batches preprocessed ahead of the model (bounds memory)
    meter_types: tuple[str, ...] | None = None
    tasks: tuple[str, ...] = ()
    allow_empty: bool = False  # a missing source or one with no photo is an error unless this is set
    prefixes: tuple[str, ...] = ()  # list only keys under these (e.g. date folders), not the whole source
    list_after: str | None = None  # list only keys sorting after this one (the previous night's last key)

    @classmethod
    def from_mapping(cls, values: Mapping) -> ReadConfig:
        """Build from plain values (CLI options, flow parameters, YAML); unknown keys are rejected."""
        reject_unknown_keys(values, cls, "read")
        values = dict(values)
        for name in ("meter_types", "tasks", "prefixes"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        model = values.get("model")
        if isinstance(model, Mapping):
            reject_unknown_keys(model, ModelSpec, "model")
            values["model"] = ModelSpec(**model)
        return cls(**{k: v for k, v in values.items() if v is not None or k in ("limit", "run_id", "meters_table")})

    def validate(self) -> ReadConfig:
        """Raise ConfigError naming the setting when something cannot work."""
        problems = []
        if not self.source:
            problems.append("source is empty: give a folder or s3://bucket/prefix with the photos")
        if not self.output:
            problems.append("output is empty: give a folder or s3://bucket/prefix for the Parquet dataset")
        if self.source and self.output and (nested := nesting(self.source, self.output)):
            problems.append(nested)
        for name in ("batch_size", "shard_size", "storage_attempts", "preprocess_workers", "prefetch_batches"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.transient_retries < 0:
            problems.append(f"transient_retries must be >= 0 (got {self.transient_retries})")
        if self.limit is not None and self.limit < 0:
            problems.append(f"limit must be >= 0 (got {self.limit})")
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            problems.append(f"min_confidence must be within [0, 1] (got {self.min_confidence})")
        if self.max_pixels < 1:
            problems.append("max_pixels must be positive")
        try:
            compile_key_pattern(self.key_pattern)
        except (re.error, ValueError) as error:
            problems.append(f"key_pattern: {error}")
        if self.run_id is not None:
            try:
                check_safe_name(self.run_id, "run_id")
            except ValueError as error:
                problems.append(str(error))
        bad_prefixes = [prefix for prefix in self.prefixes if not prefix or prefix.startswith("/") or ".." in prefix]
        if bad_prefixes:
            problems.append(f"prefixes {bad_prefixes}: give keys relative to source, e.g. 2026-11-26/")
        if self.meter_types is not None and len(self.meter_types) < 2:
            problems.append("meter_types needs at least two labels to choose between")
        if self.tasks:
            from meterread.models.florence2 import TASKS

            if self.model.family != "florence2":
                problems.append(f"tasks {list(self.tasks)} need the florence2 family (model is {self.model.family})")
            unknown = [task for task in self.tasks if task not in TASKS]
            if unknown:
                problems.append(f"unknown Florence-2 task(s) {unknown}; use {', '.join(TASKS)}")
        try:
            self.model.validate()
        except ValueError as error:
            problems.append(f"model: {error}")
        problems += [f"model: {problem}" for problem in check_pattern_fits(self.model.pattern)]
        if problems:
            raise ConfigError("invalid read config:\n  - " + "\n  - ".join(problems))
        return self

    def describe(self) -> dict:
        """Settings safe to log and store in manifests (no credentials live in this config)."""
        return dataclasses.asdict(self)
