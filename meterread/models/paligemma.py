"""PaliGemma / PaliGemma 2 family on the native `PaliGemmaForConditionalGeneration`: the reader, tiny models for
tests, the benchmark architectures (the family interface: `meterread.models.registry`).

Prompt layout (what the processor builds, and what fine-tuning used): `<image>`*N + `<bos>` + prompt + `\\n`,
then the answer and `<eos>`. Prompts are left-padded so every row's answer starts at the same position.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

from meterread.config import ModelSpec
from meterread.models.base import Architecture, Prediction, load_parts, local_files_only, model_device
from meterread.models.generation import classify_by_likelihood, pixel_values, read_readings
from meterread.models.prompts import DEFAULT_PROMPTS
from meterread.models.tiny import TinySize
from meterread.preprocess import InputLayout

FAMILY = "paligemma"
DEFAULT_PROMPT = DEFAULT_PROMPTS[FAMILY]
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MODEL_CLASS = PaliGemmaForConditionalGeneration
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<image>"]


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
    image_size: int  # the processor's square input side
    default_prompt: str  # the spec's prompt, else the family's
    layout: InputLayout = InputLayout()
    min_confidence: float | None = None  # the model's recommended threshold (meterread.json), if it has one
    family: str = FAMILY

    device = property(model_device)
    classify = classify_by_likelihood  # most likely of `labels` per image, with its probability among them

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

    def read(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Prediction]:
        return read_readings(self, images, prompts, extra_tokens=1)  # + EOS


def load(spec: ModelSpec) -> PaliGemmaReader:
    """Load base + merged adapter (see `load_parts`); the adapter's own processor wins if it saved one."""
    return PaliGemmaReader(**load_parts(MODEL_CLASS, load_processor, spec, DEFAULT_PROMPT, processor_from_adapter=True))


# --- tiny models (tests, the demo) -----------------------------------------------------------------------------------


def char_vocab() -> list[str]:
    """Special tokens, the SentencePiece word marker, printable ASCII one character per token, newline."""
    printable = [c for c in string.printable if c not in " \t\n\r\x0b\x0c"]
    return SPECIAL_TOKENS + ["▁"] + printable + ["\n"]


def build_gemma_tokenizer():
    """A `GemmaTokenizer` over a character vocabulary: digits are single tokens, as in the real Gemma vocab."""
    from transformers import GemmaTokenizer

    vocab = {token: index for index, token in enumerate(char_vocab())}
    return GemmaTokenizer(vocab=vocab, merges=[])


def image_token_count(image_size: int, patch_size: int) -> int:
    """Image tokens SigLIP produces: one per patch."""
    return (image_size // patch_size) ** 2


def tiny_paligemma_config(size: TinySize, vocab_size: int, image_token_index: int, **token_ids):
    """PaliGemma config (SigLIP + Gemma) of a tiny size; `token_ids`: pad/bos/eos ids of the tokenizer."""
    from transformers import PaliGemmaConfig

    return PaliGemmaConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": size.vision_hidden,
            "intermediate_size": size.vision_hidden * 4,
            "num_hidden_layers": size.vision_layers,
            "num_attention_heads": size.heads,
            "image_size": size.image_size,
            "patch_size": size.patch_size,
            "projection_dim": size.text_hidden,
        },
        text_config={
            "model_type": "gemma",
            "hidden_size": size.text_hidden,
            "intermediate_size": size.text_hidden * 4,
            "num_hidden_layers": size.text_layers,
            "num_attention_heads": size.heads,
            "num_key_value_heads": size.heads,
            "head_dim": size.text_hidden // size.heads,
            "vocab_size": vocab_size,
            "max_position_embeddings": 1024,
        },
        image_token_index=image_token_index,
        vocab_size=vocab_size,
        projection_dim=size.text_hidden,
        hidden_size=size.text_hidden,
        **token_ids,
    )


def build_tiny(out_dir: str | Path, size: TinySize | None = None, seed: int = 0) -> Path:
    """Build, save and return the directory of a tiny random-weight PaliGemma (SigLIP + Gemma) with its processor."""
    from transformers import SiglipImageProcessorPil

    size = size or TinySize()
    out = Path(out_dir)
    tokens = image_token_count(size.image_size, size.patch_size)
    image_processor = SiglipImageProcessorPil(
        size={"height": size.image_size, "width": size.image_size}, image_seq_length=tokens
    )
    image_processor.image_seq_length = tokens
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=build_gemma_tokenizer())
    tokenizer = processor.tokenizer
    vocab_size = (len(tokenizer) + 63) // 64 * 64
    config = tiny_paligemma_config(
        size,
        vocab_size,
        tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


# --- benchmark architectures (`meterread bench --size tiny|full`) ----------------------------------------------------


def full_config():
    """google/paligemma2-3b-pt-224: SigLIP So400m/14 at 224 px + Gemma 2 2B."""
    from transformers import PaliGemmaConfig

    return PaliGemmaConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": 27,
            "num_attention_heads": 16,
            "image_size": 224,
            "patch_size": 14,
            "projection_dim": 2304,
        },
        text_config={
            "model_type": "gemma2",
            "hidden_size": 2304,
            "intermediate_size": 9216,
            "num_hidden_layers": 26,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "head_dim": 256,
            "vocab_size": 257216,
            "query_pre_attn_scalar": 256,
            "final_logit_softcapping": 30.0,
            "attn_logit_softcapping": 50.0,
            "sliding_window": 4096,
        },
        image_token_index=257152,
        projection_dim=2304,
        hidden_size=2304,
        vocab_size=257216,
    )


def architecture(size: str) -> Architecture:
    """PaliGemma-2-3B-224 (`full`) or the project's tiny PaliGemma (`tiny`), for a random-weight benchmark."""
    if size == "tiny":
        tiny = TinySize()
        config = tiny_paligemma_config(
            tiny, 1024, image_token_index=1000, pad_token_id=1, bos_token_id=0, eos_token_id=2
        )
        return Architecture(config, tiny.image_size, image_token_count(tiny.image_size, tiny.patch_size))
    return Architecture(full_config(), 224, image_token_count(224, 14))


def synthetic_inputs(arch: Architecture, batch_size: int, device, dtype, prompt_tokens: int = 8) -> dict:
    """Fixed-shape benchmark inputs: random pixels, the image placeholders, then `<bos>` and a short prompt."""
    size, tokens = arch.image_size, arch.image_tokens
    pixels = torch.randn(batch_size, 3, size, size, device=device, dtype=dtype)
    ids = torch.full((batch_size, tokens + prompt_tokens), 2, dtype=torch.long, device=device)
    ids[:, :tokens] = arch.config.image_token_id
    ids[:, tokens + 1 :] = 100
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
        "pixel_values": pixels,
    }
