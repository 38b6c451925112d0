"""Typed settings, declared once: `ModelSpec`, `ReadConfig`, `TrainConfig` (pydantic, frozen, unknown keys rejected).

The CLI builds them from options, a YAML file and `key=value` overrides; the Prefect flows take them as typed
parameters (the UI renders a form from these fields and descriptions); prefect.yaml holds only what differs from
the defaults. Construction checks types and names; `validate()` checks what needs several fields or the
environment and raises one error listing every problem. Imports neither torch nor pyarrow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from meterread.keys import DEFAULT_KEY_PATTERN, check_safe_name, compile_key_pattern
from meterread.models.patterns import ReadingPattern
from meterread.models.references import check_reference
from meterread.models.registry import checkpoint_family, is_ensemble, is_hub_id, known_families
from meterread.parse import READING_DECIMALS, READING_INTEGER_DIGITS, READING_TYPE_NAME
from meterread.settings import ConfigError, Settings, TrainConfigError

DEMO_MODEL_DIR = Path(__file__).parent / "assets" / "demo-model"
DEMO_MODEL_FAMILY = "ppocr"  # the bundled model's family (its config.json model_type)
DEFAULT_MAX_PIXELS = 64_000_000  # decompression-bomb guard: 8000 x 8000
DEFAULT_MIN_CONFIDENCE = 0.5  # for a model that recommends no threshold
DTYPES = ("auto", "float32", "bfloat16", "float16")
STRATEGIES = ("lora", "freeze-vision", "full")
WARM_START_HEADS = ("positions", "columns")  # meterread.training.warmstart


def _is_missing_local_dir(base: str) -> bool:
    """A base that is no URL, no local directory and cannot be a hub id either: a local path that does not exist."""
    return "://" not in base and not Path(base).expanduser().is_dir() and not is_hub_id(base)


class ModelSpec(Settings):
    """Which model reads: `family`, `base` (hub id or local dir), optional LoRA `adapter` (local dir or s3:// URL).

    `base` may also be a model reference, `registry://URL` (the registry's current version) or
    `registry://URL@VERSION`: `training.registry.resolve_spec` turns it into a concrete spec whose `reference`
    names the version it read (`registry://URL@VERSION`; None for a spec that was never a reference)."""

    kind: ClassVar[str] = "model"

    family: str | None = Field(  # None only until validation: `_family_from_checkpoint` fills it in
        None,
        description="Model family: paligemma, florence2 or ppocr (default: what the base's config.json says, else "
        "the bundled model's).",
    )
    base: str = Field(
        str(DEMO_MODEL_DIR),
        description="Base model: hub id, local dir or registry://URL[@VERSION] (default: the bundled demo model).",
    )
    adapter: str | None = Field(None, description="LoRA adapter dir or s3:// URL, merged for inference.")
    dtype: str = Field("auto", description="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16.")
    device: str = Field("auto", description="auto, cpu or cuda[:N].")
    constrained: bool = Field(True, description="Constrain decoding to numbers.")
    pattern: str | None = Field(None, description="Exact reading shape, e.g. 6.1 = 6 digits + 1 decimal.")
    prompt: str | None = Field(None, description="Prompt sent with each image (default: the family's).")
    max_new_tokens: int | None = Field(None, description="Longest answer in tokens (default: from the pattern).")
    compile: bool = Field(False, description="torch.compile with a static KV cache; batches padded to one shape (GPU).")
    reference: str | None = Field(
        None, description="Set by resolution: the registry version this spec reads (recorded in manifests)."
    )

    @model_validator(mode="before")
    @classmethod
    def _family_from_checkpoint(cls, values: Any) -> Any:
        """No family given: the one the base checkpoint names (its config.json `model_type`; a local directory or
        a hub id's cached copy), else the bundled model's. A registry version brings its own (`resolve_spec`)."""
        if not isinstance(values, Mapping) or values.get("family"):
            return values
        base = values.get("base") or cls.model_fields["base"].default
        return {**values, "family": checkpoint_family(str(base)) or DEMO_MODEL_FAMILY}

    def validate(self) -> ModelSpec:
        """Raise ValueError with an actionable message when the spec cannot work."""
        if self.family not in known_families():
            raise ValueError(f"model family {self.family!r} is not one of {', '.join(known_families())}")
        if not self.base:
            raise ValueError("model base is empty: give a hub id (google/paligemma2-3b-pt-224) or a local directory")
        check_reference(self.base, self.adapter, self.reference)
        if _is_missing_local_dir(self.base):
            raise ValueError(f"model base {self.base!r} is no local directory (and a hub id is namespace/name)")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.device not in ("auto", "cpu") and not self.device.startswith(("cuda", "mps")):
            raise ValueError(f"device {self.device!r} must be auto, cpu, cuda[:N] or mps")
        ReadingPattern.parse(self.pattern)
        if self.pattern and not self.constrained:
            raise ValueError(
                f"pattern {self.pattern!r} holds decoding to a register, which needs constrained decoding: "
                "drop --no-constrained (constrained: false) or the pattern"
            )
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        return self

    def reading_pattern(self) -> ReadingPattern:
        return ReadingPattern.parse(self.pattern)


class ReadConfig(Settings):
    """Everything a read run needs. `source`/`output`/`meters_table` are fsspec URLs or local paths."""

    kind: ClassVar[str] = "read"

    source: str = Field(description="Folder or URL with photos (file://, s3://bucket/prefix).")
    output: str = Field(description="Folder or URL of the Parquet dataset.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="The model that reads.")
    batch_size: int = Field(16, description="Images per model call.")
    shard_size: int = Field(256, description="Photos per shard (one Parquet file per shard and date).")
    limit: int | None = Field(None, description="Read at most this many new photos.")
    reprocess: bool = Field(False, description="Read photos again even if the output already has them.")
    run_id: str | None = Field(None, description="Run id (default: UTC time + random suffix; in a flow: its run id).")
    key_pattern: str = Field(
        DEFAULT_KEY_PATTERN, description="Regex with named groups meter_id and timestamp, matched against each key."
    )
    meters_table: str | None = Field(None, description="CSV/Parquet: meter_id, digits, decimals, max_rate_per_day.")
    min_confidence: float | None = Field(
        None, description="Readings below this confidence are flagged (default: the model's recommendation, else 0.5)."
    )
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, description="Refuse images larger than this (decompression bombs).")
    storage_attempts: int = Field(4, description="Attempts per storage call before a photo's read fails.")
    transient_retries: int = Field(3, description="Later runs that retry a photo whose fetch failed transiently.")
    preprocess_workers: int = Field(2, description="Threads that fetch and preprocess photos beside the model.")
    prefetch_batches: int = Field(2, description="Batches preprocessed ahead of the model (bounds memory).")
    meter_types: tuple[str, ...] | None = Field(
        None, description="Meter types to recognise per photo, e.g. electricity-lcd, gas-mechanical."
    )
    tasks: tuple[str, ...] = Field((), description="Florence-2 tasks to record per photo: <OCR>, <OD>, <CAPTION>.")
    allow_empty: bool = Field(False, description="Succeed when SOURCE is missing or has no photo.")
    prefixes: tuple[str, ...] = Field((), description="List only keys under these prefixes (e.g. date folders).")
    list_after: str | None = Field(None, description="List only keys after this one (the last night's last key).")

    def validate(self) -> ReadConfig:
        """Raise ConfigError naming the setting when something cannot work."""
        problems = self.storage_problems() + self.run_problems() + self.model_problems()
        if problems:
            raise ConfigError("invalid read config:\n  - " + "\n  - ".join(problems))
        return self

    def storage_problems(self) -> list[str]:
        problems = []
        if not self.source:
            problems.append("source is empty: give a folder or s3://bucket/prefix with the photos")
        if not self.output:
            problems.append("output is empty: give a folder or s3://bucket/prefix for the Parquet dataset")
        if self.source and self.output and (nested := nesting(self.source, self.output)):
            problems.append(nested)
        bad_prefixes = [prefix for prefix in self.prefixes if not prefix or prefix.startswith("/") or ".." in prefix]
        if bad_prefixes:
            problems.append(f"prefixes {bad_prefixes}: give keys relative to source, e.g. 2026-11-26/")
        try:
            compile_key_pattern(self.key_pattern)
        except (re.error, ValueError) as error:
            problems.append(f"key_pattern: {error}")
        return problems

    def run_problems(self) -> list[str]:
        problems = []
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
        if self.run_id is not None:
            try:
                check_safe_name(self.run_id, "run_id")
            except ValueError as error:
                problems.append(str(error))
        return problems

    def model_problems(self) -> list[str]:
        problems = []
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
        return problems + [f"model: {problem}" for problem in check_pattern_fits(self.model.pattern)]

    def settings(self) -> dict:
        """Settings safe to log and store in manifests (no credentials live in this config), JSON-ready."""
        return self.model_dump(mode="json")


class LoraSettings(Settings):
    kind: ClassVar[str] = "lora"
    error: ClassVar[type[ConfigError]] = TrainConfigError

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: tuple[str, ...] | None = Field(None, description="Module names (default: the family's LORA_TARGETS).")


class AugmentSettings(Settings):
    """Photometric augmentation per training image (`training.augment`); all off by default."""

    kind: ClassVar[str] = "augment"
    error: ClassVar[type[ConfigError]] = TrainConfigError

    invert: float = Field(0.0, description="Chance an image is inverted (white digits on dark wheels).")
    grayscale: float = Field(0.0, description="Chance an image loses its colour.")
    contrast: float = Field(0.0, description="Contrast scaled by a factor within 1 +- this.")
    brightness: float = Field(0.0, description="Brightness scaled by a factor within 1 +- this.")

    @property
    def enabled(self) -> bool:
        return any(getattr(self, name) for name in type(self).model_fields)

    def problems(self) -> list[str]:
        return [
            f"augment.{name} must be within [0, 1]"
            for name in type(self).model_fields
            if not 0.0 <= getattr(self, name) <= 1.0
        ]


class TrainConfig(Settings):
    """One training recipe. Every key of a YAML recipe must be a field here (unknown keys are rejected)."""

    kind: ClassVar[str] = "training"
    error: ClassVar[type[ConfigError]] = TrainConfigError

    family: str = "paligemma"
    base: str = ""
    init_tiny: dict | None = Field(None, description="Build a tiny model from config (TinySize fields), not `base`.")
    dataset: str = ""
    output: str = ""
    strategy: str = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    augment: AugmentSettings = Field(default_factory=AugmentSettings)
    epochs: int = 2
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-5
    vision_lr_scale: float = Field(
        1.0, description="The vision tower and projector's (a ppocr backbone's) learning rate as a share of lr."
    )
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    seed: int = 0
    eval_batch_size: int = 32
    eval_every_steps: int | None = Field(None, description="Also evaluate every N steps (default: once per epoch).")
    crop_display: bool = Field(False, description="Locate and rectify the display before the model sees it.")
    display_rows: int = Field(1, description="Fold the (cropped) image into this many stacked slices of the input.")
    local_contrast: bool = Field(
        False, description="Equalise the input's lightness locally (CLAHE) after folding; reads do so too."
    )
    warm_start_steps: int = Field(0, description="Pretrain the vision encoder as a character reader first.")
    warm_start_head: str = Field(
        "positions",
        description="The warm start's head: positions (flattened tokens -> character slots) or columns (CTC over "
        "the token grid's columns).",
    )
    warm_start_lr: float = 2e-3
    warm_start_batch_size: int = 64
    pattern: str | None = None
    prompt: str | None = None
    device: str = "auto"
    resume: bool = False

    @property
    def layout(self):
        from meterread.preprocess import InputLayout

        return InputLayout(crop_display=self.crop_display, rows=self.display_rows, local_contrast=self.local_contrast)

    def validate(self) -> TrainConfig:
        problems = []
        if self.family not in known_families():
            problems.append(f"family must be one of {', '.join(known_families())}")
        if not self.base and not self.init_tiny:
            problems.append("give base (hub id or local dir) or init_tiny (build a tiny model from config)")
        elif self.base and not self.init_tiny and is_ensemble(self.base):
            problems.append(f"base {self.base} is an ensemble of checkpoints: train one of its members instead")
        if not self.dataset:
            problems.append("dataset is empty: a folder or s3:// prefix with train/ valid/ test/ splits")
        if not self.output:
            problems.append("output is empty: the folder for checkpoints")
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy must be one of {', '.join(STRATEGIES)}")
        for name in ("epochs", "batch_size", "grad_accum", "eval_batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.lr <= 0:
            problems.append("lr must be positive")
        if not 0 < self.vision_lr_scale <= 1:
            problems.append("vision_lr_scale must be in (0, 1]: a share of lr (0 would freeze: strategy freeze-vision)")
        if self.strategy == "freeze-vision" and self.vision_lr_scale != 1.0:
            problems.append("vision_lr_scale slows a vision tower that freeze-vision freezes: leave it at 1")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append("max_steps must be at least 1")
        if self.display_rows < 1:
            problems.append("display_rows must be at least 1")
        if self.warm_start_head not in WARM_START_HEADS:
            problems.append(f"warm_start_head must be one of {', '.join(WARM_START_HEADS)}")
        if self.warm_start_head == "columns" and self.display_rows > 1:
            problems.append("warm_start_head 'columns' reads the image left to right: it needs display_rows 1")
        problems += self.augment.problems()
        if self.strategy == "lora" and self.lora.rank < 1:
            problems.append("lora.rank must be at least 1")
        if problems:
            raise TrainConfigError("invalid training config:\n  - " + "\n  - ".join(problems))
        return self


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
            f"pattern {pattern!r} has {shape.integer_digits} integer digits; the reading column "
            f"({READING_TYPE_NAME}) holds at most {READING_INTEGER_DIGITS}"
        )
    if (shape.decimals or 0) > READING_DECIMALS:
        problems.append(
            f"pattern {pattern!r} has {shape.decimals} decimals; the reading column ({READING_TYPE_NAME}) holds "
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


def effective_min_confidence(given: float | None, recommended: float | None) -> float:
    """The threshold a run uses: the one given, else the model's recommendation, else DEFAULT_MIN_CONFIDENCE."""
    if given is not None:
        return given
    return recommended if recommended is not None else DEFAULT_MIN_CONFIDENCE
