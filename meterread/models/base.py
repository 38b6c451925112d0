"""The `Reader` protocol every model family implements, the model spec, and what they share.

A family module exposes `load(spec) -> Reader` (the whole interface: `meterread.models.registry`). Readers take
model-ready RGB uint8 images (square, `reader.image_size` px, from `meterread.preprocess`) and prompts, and return
one `Prediction` per image. Family readers share code by composition, not a base class: `load_parts` builds what a
VLM reader dataclass holds (`checkpoint_facts`: the part every family's reader records), `model_device` is its
`device`, and `meterread.models.generation` has `read_readings` and `classify_by_likelihood`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from meterread.config import ModelSpec
from meterread.models.registry import ENSEMBLE_FILE, checkpoint_model_type, ensemble_members, known_families
from meterread.preprocess import PREPROCESS_VERSION, InputLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """Model output for one image: raw text, per-token log-probabilities (EOS included) and seconds spent
    (the batch's wall time divided by its size)."""

    text: str
    token_logprobs: tuple[float, ...] = ()
    elapsed_s: float = 0.0


@runtime_checkable
class Reader(Protocol):
    """What the read path uses of a loaded model (every family's reader). Readers are dataclasses holding their
    `spec`: `with_pattern` copies one with another reading pattern."""

    family: str
    spec: ModelSpec
    image_size: int
    model_id: str
    adapter_id: str | None
    fingerprint: str
    default_prompt: str
    layout: InputLayout
    min_confidence: float | None

    @property
    def device(self): ...

    def read(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Prediction]: ...

    def classify(self, images: Sequence[np.ndarray], prompt: str, labels: Sequence[str]) -> list[tuple[str, float]]:
        """Most likely label per image and its probability among `labels`."""
        ...


@runtime_checkable
class TrainableReader(Reader, Protocol):
    """What training, warm start, likelihood scoring and the bench also use: the torch model, its processor and
    teacher-forcing batches."""

    model: object
    processor: object

    def training_batch(self, images: Sequence[np.ndarray], prompts: Sequence[str], answers: Sequence[str]) -> dict: ...


@runtime_checkable
class TaskReader(Reader, Protocol):
    """A reader with task tokens besides reading (Florence-2: `<OCR_WITH_REGION>`, `<OD>`, ...)."""

    def run_task(
        self, images: Sequence[np.ndarray], task: str, image_sizes: Sequence[tuple[int, int]], max_new_tokens: int = 256
    ) -> list[dict]: ...


@dataclass(frozen=True)
class Architecture:
    """A family's model config with what the bench needs to feed it (`family.architecture(size)`): the square input
    side in pixels and the number of image tokens the vision tower produces."""

    config: object
    image_size: int
    image_tokens: int


class ModelLoadError(ValueError):
    """A model that cannot be loaded as asked; the message says why in one line."""


def resolve_device(name: str):
    """`auto` -> cuda when available, else cpu. Raises ModelLoadError for a CUDA device on a machine without one."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return device


def check_family(spec: ModelSpec) -> None:
    """Refuse a family that does not fit the checkpoint (ModelLoadError naming the right one)."""
    model_type = checkpoint_model_type(spec.base)
    if model_type is None or model_type == spec.family:
        return
    families = known_families()
    hint = f"; use --family {model_type}" if model_type in families else f"; supported families: {', '.join(families)}"
    raise ModelLoadError(f"--family {spec.family} does not fit {spec.base}: its config.json says {model_type!r}{hint}")


def resolve_dtype(name: str, device) -> object:
    """`auto` -> bfloat16 on CUDA, float32 elsewhere."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def local_files_only() -> bool:
    """Respect `HF_HUB_OFFLINE` (and the legacy `TRANSFORMERS_OFFLINE`)."""
    return any(
        os.environ.get(name, "").lower() in ("1", "true", "yes") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def cache_root() -> Path:
    """`$METERREAD_CACHE` (default `~/.cache/meterread`): fetched adapters and weight digests live below it."""
    return Path(os.environ.get("METERREAD_CACHE", Path.home() / ".cache" / "meterread"))


def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a whole file, streamed; cached on disk by path, size and mtime so an unchanged file is hashed
    once (`$METERREAD_CACHE/digests/`)."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    cached = cache_root() / "digests" / key
    if cached.is_file():
        return cached.read_text().strip()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(digest.hexdigest())
    except OSError:  # a read-only home: the digest is still right, only not remembered
        pass
    return digest.hexdigest()


def _weights_digest(directory: Path) -> str:
    """Content digest of a model directory: every config file and the whole of every weights file; an ensemble's
    (`registry.ensemble_members`) each member's name and digest instead of its ensemble.json (where the members were
    copied from is no part of what reads)."""
    digest = hashlib.sha256()
    configs = [path for path in sorted(directory.glob("*.json")) if path.name != ENSEMBLE_FILE]
    for path in configs + sorted(directory.glob("*.safetensors")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.suffix == ".json" else file_digest(path).encode())
    for member in ensemble_members(directory) or ():
        digest.update(f"{member.name}:{_weights_digest(member)}".encode())
    return digest.hexdigest()[:16]


def source_digest(source: str | None) -> str:
    """Digest identifying a base or adapter: local dir contents, else the hub id / URL itself."""
    if not source:
        return "none"
    path = Path(source)
    if path.is_dir():
        return _weights_digest(path)
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def fingerprint(spec: ModelSpec, base_dir: str, adapter_dir: str | None, prompt: str, preprocess_version: str) -> str:
    """Identity of "this model reading this way": weights, adapter, prompt, decoding, preprocessing."""
    parts = [
        spec.family,
        source_digest(base_dir),
        source_digest(adapter_dir),
        prompt,
        str(spec.constrained),
        str(spec.pattern),
        preprocess_version,
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def has_processor(directory: str) -> bool:
    """Whether `directory` holds a saved processor (or at least its tokenizer)."""
    return (Path(directory) / "processor_config.json").is_file() or (Path(directory) / "tokenizer.json").is_file()


def load_parts(model_class, load_processor, spec: ModelSpec, default_prompt: str, processor_from_adapter: bool) -> dict:
    """What a family's reader dataclass is built from, as its keyword arguments: `model_class` with `spec`'s adapter
    merged (`meterread.models.loading.load_model`), the processor (`load_processor(source)`: from the adapter's
    directory when `processor_from_adapter` and it saved one, else from the base), the square input side, the prompt
    (`spec.prompt`, else `default_prompt`), the fingerprint, the input layout and the recommended threshold."""
    from meterread.models.loading import load_model

    model, adapter_dir = load_model(model_class, spec)
    from_adapter = processor_from_adapter and adapter_dir and has_processor(adapter_dir)
    processor = load_processor(adapter_dir if from_adapter else spec.base)
    return {
        "model": model,
        "processor": processor,
        "image_size": int(processor.image_processor.size["height"]),
        **checkpoint_facts(spec, adapter_dir, default_prompt),
    }


def checkpoint_facts(spec: ModelSpec, adapter_dir: str | None, default_prompt: str) -> dict:
    """What every family's reader records of its checkpoint, as keyword arguments: the spec, model and adapter ids,
    the prompt (`spec.prompt`, else `default_prompt`), the fingerprint, the input layout and the recommended
    threshold (`meterread.json`, adapter first)."""
    from meterread.models.loading import input_layout, recommended_min_confidence

    prompt = spec.prompt or default_prompt
    return {
        "spec": spec,
        "model_id": spec.base,
        "adapter_id": spec.adapter,
        "fingerprint": fingerprint(spec, spec.base, adapter_dir, prompt, PREPROCESS_VERSION),
        "default_prompt": prompt,
        "layout": input_layout(adapter_dir, spec.base),
        "min_confidence": recommended_min_confidence(adapter_dir, spec.base),
    }


def model_device(reader):
    """The device of `reader.model`; readers declare `device = property(model_device)`, so it follows the model
    (training replaces `reader.model` with the adapted one)."""
    return reader.model.device


def spec_fingerprint(spec: ModelSpec) -> str:
    """The fingerprint `load_reader(spec)` would report, without loading weights (fan-out orchestrators plan with
    it). Fetches an s3:// adapter into the local cache, as loading would; resolves a model reference as loading
    would (pass a resolved spec to fingerprint the version a run reads)."""
    from meterread.models.loading import fetch_adapter
    from meterread.models.prompts import DEFAULT_PROMPTS
    from meterread.preprocess import PREPROCESS_VERSION
    from meterread.training.registry import resolve_spec

    spec = resolve_spec(spec.validate())
    adapter_dir = fetch_adapter(spec.adapter) if spec.adapter else None
    prompt = spec.prompt or DEFAULT_PROMPTS[spec.family]
    return fingerprint(spec, spec.base, adapter_dir, prompt, PREPROCESS_VERSION)


def read_with_backoff(reader: Reader, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Prediction]:
    """`reader.read`, halving the batch on CUDA out-of-memory until a single image still fails."""
    import torch

    try:
        return reader.read(images, prompts)
    except torch.cuda.OutOfMemoryError:
        if len(images) == 1:
            raise
        torch.cuda.empty_cache()
        half = len(images) // 2
        log.warning("CUDA out of memory at batch %d; retrying as two batches of %d", len(images), half)
        return read_with_backoff(reader, images[:half], prompts[:half]) + read_with_backoff(
            reader, images[half:], prompts[half:]
        )


def read_padded(reader: Reader, images: Sequence[np.ndarray], prompts: Sequence[str], batch_size: int):
    """`read_with_backoff` with a short batch padded to `batch_size` (repeating its last image), so a compiled
    model with a static cache sees one input shape all night. Returns one prediction per real image."""
    missing = batch_size - len(images)
    if missing <= 0 or not images:
        return read_with_backoff(reader, images, prompts)
    padded = read_with_backoff(reader, [*images, *[images[-1]] * missing], [*prompts, *[prompts[-1]] * missing])
    return padded[: len(images)]


def with_pattern(reader: Reader, pattern: str | None) -> Reader:
    """The same reader (same weights, a shallow copy) constrained to `pattern` instead of its spec's; `reader`
    itself when `pattern` is None or already its own. Readers are dataclasses holding their `spec`."""
    if pattern is None or pattern == reader.spec.pattern:
        return reader
    return replace(reader, spec=reader.spec.replace(pattern=pattern))


def read_by_pattern(
    reader: Reader,
    images: Sequence[np.ndarray],
    prompts: Sequence[str],
    patterns: Sequence[str | None],
    read: Callable[[Reader, list, list], list[Prediction]],
) -> list[Prediction]:
    """Read each image constrained to its own reading pattern (None: the reader's own), with one `read(reader,
    images, prompts)` call per distinct pattern (`read_with_backoff`, `read_in_length_order`, ...); predictions in
    the input order. A meter's known register (digits and decimals) is such a
    pattern: the point goes where the register has it, whatever the pixels suggest."""
    if len(patterns) != len(images):
        raise ValueError(f"{len(patterns)} reading patterns for {len(images)} images")
    groups: dict[str | None, list[int]] = {}
    for index, pattern in enumerate(patterns):
        groups.setdefault(reader.spec.pattern if pattern is None else pattern, []).append(index)
    result: list[Prediction | None] = [None] * len(images)
    for pattern, indices in groups.items():
        chunk = read(with_pattern(reader, pattern), [images[i] for i in indices], [prompts[i] for i in indices])
        for index, prediction in zip(indices, chunk, strict=True):
            result[index] = prediction
    return result  # type: ignore[return-value]


def read_in_length_order(reader: Reader, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Prediction]:
    """Read with prompts of similar length batched together (less padding), results in the input order."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    predictions = reader.read([images[i] for i in order], [prompts[i] for i in order])
    result: list[Prediction | None] = [None] * len(order)
    for position, prediction in zip(order, predictions):
        result[position] = prediction
    return result  # type: ignore[return-value]
