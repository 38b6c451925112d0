"""PaliGemma / PaliGemma 2 reader on the native `PaliGemmaForConditionalGeneration`.

Prompt layout (what the processor builds, and what fine-tuning used): `<image>`*N + `<bos>` + prompt + `\\n`,
then the answer and `<eos>`. Prompts are left-padded so every row's answer starts at the same position.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

from meterread.config import ModelSpec
from meterread.models.base import Prediction, fingerprint, local_files_only
from meterread.models.decoding import ReadingConstraint
from meterread.models.generation import classify_by_likelihood, generate_predictions, pixel_values
from meterread.models.loading import input_layout, load_model, recommended_min_confidence
from meterread.models.prompts import DEFAULT_PROMPTS
from meterread.preprocess import PREPROCESS_VERSION, InputLayout

FAMILY = "paligemma"
DEFAULT_PROMPT = DEFAULT_PROMPTS[FAMILY]
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class _TorchvisionNotice(logging.Filter):
    """transformers 5 notes that SigLIP's processor falls back to PIL without torchvision: expected here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision" not in record.getMessage()


logging.getLogger("transformers").addFilter(_TorchvisionNotice())


def load_processor(source: str) -> PaliGemmaProcessor:
    processor = PaliGemmaProcessor.from_pretrained(source, local_files_only=local_files_only())
    processor.tokenizer.padding_side = "left"
    return processor


@dataclass
class PaliGemmaReader:
    model: PaliGemmaForConditionalGeneration
    processor: PaliGemmaProcessor
    spec: ModelSpec
    model_id: str
    adapter_id: str | None
    fingerprint: str
    layout: InputLayout = InputLayout()
    min_confidence: float | None = None  # the model's recommended threshold (meterread.json), if it has one
    family: str = FAMILY

    @property
    def image_size(self) -> int:
        return int(self.processor.image_processor.size["height"])

    @property
    def default_prompt(self) -> str:
        return self.spec.prompt or DEFAULT_PROMPT

    @property
    def device(self) -> torch.device:
        return self.model.device

    def prompt_texts(self, prompts: Sequence[str]) -> list[str]:
        tokenizer = self.processor.tokenizer
        image_tokens = self.processor.image_token * self.processor.image_seq_length
        return [f"{image_tokens}{tokenizer.bos_token}{prompt}\n" for prompt in prompts]

    def prepare(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> dict:
        """Model inputs for a batch: left-padded ids, attention mask, prefix token types, pixel values."""
        processor = self.processor
        encoded = processor.tokenizer(
            self.prompt_texts(prompts), add_special_tokens=False, padding="longest", return_tensors="pt"
        )
        pixels = pixel_values(images, processor.image_processor.image_mean, processor.image_processor.image_std)
        return {
            "input_ids": encoded["input_ids"].to(self.device),
            "attention_mask": encoded["attention_mask"].to(self.device),
            "token_type_ids": torch.zeros_like(encoded["input_ids"]).to(self.device),
            "pixel_values": pixels.to(self.device, self.model.dtype),
        }

    def training_batch(self, images: Sequence[np.ndarray], prompts: Sequence[str], answers: Sequence[str]) -> dict:
        """Teacher-forcing batch, as `PaliGemmaProcessor(suffix=...)` builds it: prompt tokens masked (-100) in
        `labels`, answer + `<eos>` kept, `token_type_ids` 1 on the answer; right-padded."""
        tokenizer = self.processor.tokenizer
        encoded = tokenizer(
            self.prompt_texts(prompts),
            text_pair=[answer + tokenizer.eos_token for answer in answers],
            add_special_tokens=False,
            padding="longest",
            padding_side="right",
            return_token_type_ids=True,
            return_tensors="pt",
        )
        labels = encoded["input_ids"].masked_fill(encoded["token_type_ids"] == 0, -100)
        labels = labels.masked_fill(encoded["attention_mask"] == 0, -100)
        pixels = pixel_values(
            images, self.processor.image_processor.image_mean, self.processor.image_processor.image_std
        )
        return {
            "input_ids": encoded["input_ids"].to(self.device),
            "attention_mask": encoded["attention_mask"].to(self.device),
            "token_type_ids": encoded["token_type_ids"].to(self.device),
            "pixel_values": pixels.to(self.device, self.model.dtype),
            "labels": labels.to(self.device),
        }

    def classify(self, images: Sequence[np.ndarray], prompt: str, labels: Sequence[str]) -> list[tuple[str, float]]:
        """Most likely of `labels` per image (e.g. meter type), with its probability among them."""
        return classify_by_likelihood(self, images, prompt, labels)

    def read(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Prediction]:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if not images:
            return []
        inputs = self.prepare(images, prompts)
        pattern = self.spec.reading_pattern()
        tokenizer = self.processor.tokenizer
        prompt_length = inputs["input_ids"].shape[1]
        constraint = (
            ReadingConstraint(tokenizer, pattern, tokenizer.eos_token_id, prompt_length)
            if self.spec.constrained
            else None
        )
        max_new_tokens = self.spec.max_new_tokens or pattern.max_length() + 1
        return generate_predictions(self.model, inputs, tokenizer, max_new_tokens, constraint, prompt_length)


def load(spec: ModelSpec) -> PaliGemmaReader:
    """Load base + merged adapter (see `load_model`); the adapter's own processor wins if it saved one."""
    model, adapter_dir = load_model(PaliGemmaForConditionalGeneration, spec)
    processor = load_processor(adapter_dir if adapter_dir and _has_processor(adapter_dir) else spec.base)
    prompt = spec.prompt or DEFAULT_PROMPT
    return PaliGemmaReader(
        model=model,
        processor=processor,
        spec=spec,
        model_id=spec.base,
        adapter_id=spec.adapter,
        fingerprint=fingerprint(spec, spec.base, adapter_dir, prompt, PREPROCESS_VERSION),
        layout=input_layout(adapter_dir, spec.base),
        min_confidence=recommended_min_confidence(adapter_dir, spec.base),
    )


def _has_processor(directory: str) -> bool:
    from pathlib import Path

    return (Path(directory) / "processor_config.json").is_file() or (Path(directory) / "tokenizer.json").is_file()


def build_tiny(out_dir, size=None, seed: int = 0):
    """A tiny random-weight PaliGemma saved to `out_dir` (see `meterread.models.tiny`)."""
    from meterread.models.tiny import TinySize, build_tiny_paligemma

    return build_tiny_paligemma(out_dir, size or TinySize(), seed)
