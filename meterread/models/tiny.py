"""Tiny models built from config, with a tokenizer built locally, saved with `save_pretrained`.

They exercise exactly the loading path of real checkpoints (`from_pretrained` on a directory) without hub
access. Random weights read nothing; `meterread train` turns them into the demo model.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import torch

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<image>"]


@dataclass(frozen=True)
class TinySize:
    """Architecture knobs of a tiny model."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 64
    vision_layers: int = 2
    text_hidden: int = 64
    text_layers: int = 2
    heads: int = 4


def char_vocab() -> list[str]:
    """Special tokens, the SentencePiece word marker, printable ASCII one character per token, newline."""
    printable = [c for c in string.printable if c not in " \t\n\r\x0b\x0c"]
    return SPECIAL_TOKENS + ["▁"] + printable + ["\n"]


def build_gemma_tokenizer():
    """A `GemmaTokenizer` over a character vocabulary: digits are single tokens, as in the real Gemma vocab."""
    from transformers import GemmaTokenizer

    vocab = {token: index for index, token in enumerate(char_vocab())}
    return GemmaTokenizer(vocab=vocab, merges=[])


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


def build_tiny_paligemma(out_dir: str | Path, size: TinySize = TinySize(), seed: int = 0) -> Path:
    """Build, save and return the directory of a tiny PaliGemma (SigLIP + Gemma) with its processor."""
    from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor, SiglipImageProcessorPil

    out = Path(out_dir)
    image_tokens = (size.image_size // size.patch_size) ** 2
    image_processor = SiglipImageProcessorPil(
        size={"height": size.image_size, "width": size.image_size}, image_seq_length=image_tokens
    )
    image_processor.image_seq_length = image_tokens
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


def build_tiny(family: str, out_dir: str | Path, size: TinySize = TinySize(), seed: int = 0) -> Path:
    """A tiny random-weight model of `family`, through the family registry. Raises ValueError for an unknown one."""
    from meterread.models.registry import family_module

    return family_module(family).build_tiny(out_dir, size, seed)
