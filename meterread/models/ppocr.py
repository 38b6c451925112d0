"""PP-OCR family: PP-OCRv4's recogniser with a digit CTC head (`meterread.models.ppocr_network`), the family
interface of `meterread.models.registry`.

Why a third family: no VLM weights can be fetched here, and models trained from scratch do not read meter makes
they never saw; PP-OCRv4's pretrained recogniser ships inside rapidocr's wheel, and fine-tuned on real strips it
reads unseen makes several times as often as PP-OCRv4 itself (docs/training.md, "Pretrained features").
`meterread import-ppocr OUT` makes the starting checkpoint.

The reader takes meterread's square model input, unfolds its `layout.rows` slices back into one strip (the inverse
of `meterread.preprocess.fold_into_square`), scales it to the model's `strip_height` (48 as published, 64 in the
bundle) x `strip_width` and reads the best CTC path. It reads without a prompt (prompts are accepted and ignored)
and cannot rank meter-type labels.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from meterread.config import ModelSpec
from meterread.models.base import Architecture, Prediction, checkpoint_facts, model_device
from meterread.models.decoding import ctc_best_path, ctc_constrained_path, ctc_text, with_reading_likelihood
from meterread.models.ppocr_network import DIGITS, STRIP_HEIGHT, PPOCRConfig, PPOCRForCTC
from meterread.models.prompts import DEFAULT_PROMPTS
from meterread.models.registry import is_ensemble
from meterread.models.tiny import TinySize
from meterread.preprocess import InputLayout

if TYPE_CHECKING:
    from meterread.models.ppocr_ensemble import PPOCREnsembleReader

FAMILY = "ppocr"
DEFAULT_PROMPT = DEFAULT_PROMPTS[FAMILY]
LORA_TARGETS = ("qkv", "proj", "fc1", "fc2")
MODEL_CLASS = PPOCRForCTC


def unfold_square(image: np.ndarray, rows: int) -> np.ndarray:
    """The inverse of `fold_into_square`: the `rows` stacked slices of a square laid side by side again, a
    (`size` / `rows`) x (`size` * `rows`) strip. Requires `size % rows == 0`."""
    size = image.shape[0]
    if size % rows:
        raise ValueError(f"input size {size} is not divisible by {rows} rows")
    height = size // rows
    return np.ascontiguousarray(np.hstack([image[i * height : (i + 1) * height] for i in range(rows)]))


def reading_decoder(spec: ModelSpec, vocab: str) -> Callable[[np.ndarray], tuple[list[int], list[float]]]:
    """One image's (columns, classes) log-probabilities -> (class ids, log-probability per class): the path
    constrained to `spec`'s reading pattern when `spec.constrained` (`ctc_constrained_path`), else the best path."""
    if not spec.constrained:
        return ctc_best_path
    return partial(ctc_constrained_path, vocab=vocab, pattern=spec.reading_pattern())


@dataclass(frozen=True)
class StripProcessor:
    """Square model inputs -> the network's pixel batch: unfolded into strips of `rows` slices (the reader's layout),
    scaled to `height` x `width` px (wider than the fold's aspect stretches the digits: more CTC columns per digit),
    BGR, scaled to [-1, 1] (PaddleOCR's input convention)."""

    width: int = 192
    height: int = STRIP_HEIGHT

    def __call__(self, images: Sequence[np.ndarray], rows: int) -> torch.Tensor:
        strips = [unfold_square(image, rows) for image in images]
        resized = [cv2.resize(s, (self.width, self.height), interpolation=cv2.INTER_AREA) for s in strips]
        batch = torch.from_numpy(np.stack(resized)[..., ::-1].copy()).permute(0, 3, 1, 2).float()
        return batch / 127.5 - 1.0

    def save_pretrained(self, directory) -> None:
        """Nothing to save: the strip width is in the model's config.json, the rows in `meterread.json`."""


def encode_labels(answers: Sequence[str], vocab: str) -> torch.Tensor:
    """Readings -> (B, L) class ids (1-based into `vocab`), padded with -100. Raises ValueError for a character the
    vocabulary lacks."""
    longest = max((len(answer) for answer in answers), default=0)
    labels = torch.full((len(answers), max(longest, 1)), -100, dtype=torch.long)
    for row, answer in enumerate(answers):
        unknown = sorted(set(answer) - set(vocab))
        if unknown:
            raise ValueError(f"label {answer!r} has {unknown}, outside the model's vocabulary {vocab!r}")
        labels[row, : len(answer)] = torch.tensor([vocab.index(c) + 1 for c in answer], dtype=torch.long)
    return labels


@dataclass
class PPOCRReader:
    model: PPOCRForCTC
    processor: StripProcessor
    spec: ModelSpec
    model_id: str
    adapter_id: str | None
    fingerprint: str
    image_size: int  # the square input side meterread's preprocessing produces
    default_prompt: str
    layout: InputLayout = InputLayout()
    min_confidence: float | None = None
    family: str = FAMILY

    device = property(model_device)

    def pixels(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return self.processor(images, self.layout.rows).to(self.device, self.model.dtype)

    @torch.inference_mode()
    def log_probs(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(B, columns, classes) CTC log-probabilities of square model inputs (float32, on the CPU)."""
        return self.model(self.pixels(images)).logits.float().log_softmax(-1).cpu().numpy()

    def read(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Prediction]:
        """The best CTC path per image (`reading_decoder`); the confidence is the reading's probability (every CTC
        alignment of it: `with_reading_likelihood`), split per character in the path's proportions. Prompts are not
        used. Raises ValueError when the numbers of images and prompts differ."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if not images:
            return []
        started = time.perf_counter()
        decode = reading_decoder(self.spec, self.model.config.vocab)
        decoded = [with_reading_likelihood(columns, decode(columns)) for columns in self.log_probs(images)]
        elapsed = (time.perf_counter() - started) / len(images)
        return [Prediction(ctc_text(ids, self.model.config.vocab), tuple(parts), elapsed) for ids, parts in decoded]

    def classify(self, images: Sequence[np.ndarray], prompt: str, labels: Sequence[str]) -> list[tuple[str, float]]:
        raise ValueError("the ppocr family reads digits only and cannot rank meter types; drop meter_types")

    def training_batch(self, images: Sequence[np.ndarray], prompts: Sequence[str], answers: Sequence[str]) -> dict:
        """`pixel_values` and CTC `labels` (prompts are not used)."""
        labels = encode_labels(answers, self.model.config.vocab)
        return {"pixel_values": self.pixels(images), "labels": labels.to(self.device)}


def load(spec: ModelSpec) -> PPOCRReader | PPOCREnsembleReader:
    """The reader of `spec.base`: a `ppocr` checkpoint (`load_checkpoint`) or an ensemble directory of them
    (`meterread.models.ppocr_ensemble.load_ensemble`)."""
    if is_ensemble(spec.base):
        from meterread.models.ppocr_ensemble import load_ensemble

        return load_ensemble(spec)
    return load_checkpoint(spec)


def load_checkpoint(spec: ModelSpec) -> PPOCRReader:
    """The reader of one `ppocr` checkpoint (a LoRA adapter merged in when the spec has one)."""
    from meterread.models.loading import load_model

    model, adapter_dir = load_model(MODEL_CLASS, spec)
    return PPOCRReader(
        model=model,
        processor=StripProcessor(int(model.config.strip_width), int(model.config.strip_height)),
        image_size=int(model.config.image_size),
        **checkpoint_facts(spec, adapter_dir, DEFAULT_PROMPT),
    )


# --- tiny models (tests) -------------------------------------------------------------------------------------------


def tiny_config(size: TinySize) -> PPOCRConfig:
    """A small recogniser of the same shape: height stride 16, width stride 4 before the neck's pooling."""
    wide = size.vision_hidden
    blocks = (
        (3, 8, 16, (1, 1), False),
        (3, 16, 32, (2, 1), False),
        (3, 32, 32, (1, 2), False),
        (3, 32, wide, (2, 1), True),
        (3, wide, wide, (2, 1), False),
    )
    return PPOCRConfig(
        vocab=DIGITS,
        image_size=size.image_size,
        stem_channels=8,
        blocks=blocks,
        neck_hidden=size.vision_hidden,
        neck_depth=size.vision_layers,
        neck_heads=size.heads,
    )


def build_tiny(out_dir: str | Path, size: TinySize | None = None, seed: int = 0) -> Path:
    """Build, save and return the directory of a tiny random-weight recogniser (reading two folded rows)."""
    size = size or TinySize()
    torch.manual_seed(seed)
    model = PPOCRForCTC(tiny_config(size))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    (out / "meterread.json").write_text(json.dumps(InputLayout(rows=2).to_dict(), indent=2))
    return out


# --- benchmark architectures (`meterread bench --size tiny|full`) --------------------------------------------------


def architecture(size: str) -> Architecture:
    """PP-OCRv4's recogniser (`full`) or the tiny one; `image_tokens` is the number of CTC columns (a 48 x 192
    strip)."""
    config = tiny_config(TinySize()) if size == "tiny" else PPOCRConfig()
    return Architecture(config, config.image_size, config.strip_width // 8)


def synthetic_inputs(arch: Architecture, batch_size: int, device, dtype, prompt_tokens: int = 8) -> dict:
    """Fixed-shape benchmark inputs: random strips of the architecture's height, `image_tokens` columns (no prompt)."""
    shape = (batch_size, 3, int(arch.config.strip_height), arch.image_tokens * 8)
    return {"pixel_values": torch.randn(*shape, device=device, dtype=dtype)}
