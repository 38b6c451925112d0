"""Florence-2 family on the native `Florence2ForConditionalGeneration` (converted checkpoints such as
`florence-community/Florence-2-base-ft`; never `trust_remote_code`): the reader, tiny models for tests, the benchmark
architectures (the family interface: `meterread.models.registry`).

Encoder input: `<image>`*N + `<s>` + prompt + `</s>`; the decoder starts from `decoder_start_token_id` and, for
hub checkpoints, a forced `<s>`. The convolutional DaViT encoder sees the square image at the processor's size.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import Florence2ForConditionalGeneration, Florence2Processor

from meterread.config import ModelSpec
from meterread.models.base import Architecture, Prediction, load_parts, local_files_only, model_device
from meterread.models.generation import classify_by_likelihood, generate_predictions, pixel_values, read_readings
from meterread.models.prompts import DEFAULT_PROMPTS
from meterread.models.tiny import TinySize
from meterread.preprocess import InputLayout

FAMILY = "florence2"
DEFAULT_PROMPT = DEFAULT_PROMPTS[FAMILY]
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
MODEL_CLASS = Florence2ForConditionalGeneration
TASKS = ("<OCR>", "<OCR_WITH_REGION>", "<OD>", "<CAPTION>", "<DETAILED_CAPTION>", "<REGION_PROPOSAL>")
LOCATION_BINS = 1000
# What converted hub checkpoints carry in processor_config.json (mirrors transformers' Florence-2 processor tests).
POST_PROCESSOR_CONFIG = {
    "ocr": {
        "pattern": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>",
        "area_threshold": 0.0,
    },
    "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}


def parse_task_output(processor, text: str, task: str, image_size: tuple[int, int]) -> dict:
    """Generated task text -> structured result, e.g. `<OCR_WITH_REGION>` ->
    `{"quad_boxes": [[x1, y1, ..., x4, y4]], "labels": ["12345.6"]}` in pixels of `image_size` (width, height)."""
    parsed = processor.post_process_generation(text=text, task=task, image_size=image_size)[task]
    return {"text": parsed} if isinstance(parsed, str) else parsed


def load_processor(source: str) -> Florence2Processor:
    return Florence2Processor.from_pretrained(source, local_files_only=local_files_only())


@dataclass
class Florence2Reader:
    model: Florence2ForConditionalGeneration
    processor: Florence2Processor
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
        image_tokens = self.processor.image_token * self.processor.num_image_tokens
        expanded = self.processor._construct_prompts(list(prompts))  # task tokens -> their questions
        return [f"{image_tokens}{tokenizer.bos_token}{prompt}{tokenizer.eos_token}" for prompt in expanded]

    def prepare(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> dict:
        processor = self.processor
        encoded = processor.tokenizer(
            self.prompt_texts(prompts), add_special_tokens=False, padding="longest", return_tensors="pt"
        )
        pixels = pixel_values(images, processor.image_processor.image_mean, processor.image_processor.image_std)
        return {
            "input_ids": encoded["input_ids"].to(self.device),
            "attention_mask": encoded["attention_mask"].to(self.device),
            "pixel_values": pixels.to(self.device, self.model.dtype),
        }

    def training_batch(self, images: Sequence[np.ndarray], prompts: Sequence[str], answers: Sequence[str]) -> dict:
        """Teacher-forcing batch: encoder gets image + prompt; `labels` = `<s>` answer `</s>` (padding -100).
        The model shifts labels right into `decoder_input_ids` itself: labels must not be shifted here."""
        batch = self.prepare(images, prompts)
        encoded = self.processor.tokenizer(list(answers), padding="longest", return_tensors="pt")
        labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        return {**batch, "labels": labels.to(self.device)}

    def run_task(
        self, images: Sequence[np.ndarray], task: str, image_sizes: Sequence[tuple[int, int]], max_new_tokens: int = 256
    ) -> list[dict]:
        """Run a Florence-2 task token (`<OCR>`, `<OCR_WITH_REGION>`, `<OD>`, `<CAPTION>` …) unconstrained and
        parse it with the processor's post-processor; coordinates are scaled to each photo's (width, height)."""
        if task not in TASKS:
            raise ValueError(f"unsupported Florence-2 task {task!r}; use one of {', '.join(TASKS)}")
        inputs = self.prepare(images, [task] * len(images))
        tokenizer = self.processor.tokenizer
        raw = generate_predictions(self.model, inputs, tokenizer, max_new_tokens, None, 1, skip_special_tokens=False)
        return [parse_task_output(self.processor, p.text, task, size) for p, size in zip(raw, image_sizes)]

    def read(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Prediction]:
        forced_bos = self.model.generation_config.forced_bos_token_id
        return read_readings(self, images, prompts, extra_tokens=2, forced_first_id=forced_bos)  # + <s>, EOS


def load(spec: ModelSpec) -> Florence2Reader:
    """Load base + merged adapter (see `load_parts`) and the base's processor."""
    return Florence2Reader(
        **load_parts(MODEL_CLASS, load_processor, spec, DEFAULT_PROMPT, processor_from_adapter=False)
    )


def build_bart_tokenizer():
    """A `BartTokenizer` over byte-level characters (no merges) with Florence-2's `<image>` and `<loc_N>` tokens."""
    from transformers import BartTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    chars = [c for c in string.printable if c not in " \t\n\r\x0b\x0c"] + ["Ġ", "Ċ"]
    vocab = {token: index for index, token in enumerate(specials + chars)}
    tokenizer = BartTokenizer(vocab=vocab, merges=[], extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_tokens([f"<loc_{i}>" for i in range(LOCATION_BINS)] + ["<od>", "</od>", "<ocr>", "</ocr>"])
    return tokenizer


def florence2_config(
    *,
    depths: list[int],
    embed_dim: list[int],
    heads: list[int],
    window_size: int,
    vision_positions: int,
    hidden: int,
    text_layers: int,
    text_heads: int,
    text_positions: int,
    vocab_size: int,
    image_token_id: int,
    pad_token_id: int,
    bos_token_id: int,
    eos_token_id: int,
):
    """Florence-2 config: a 4-stage DaViT (`depths`, `embed_dim`, `heads` = groups per stage) and a BART of
    `text_layers` encoder and decoder layers, with the generation ids Florence-2 checkpoints use."""
    from transformers import Florence2Config

    return Florence2Config(
        vision_config={
            "depths": depths,
            "embed_dim": embed_dim,
            "num_heads": heads,
            "num_groups": heads,
            "window_size": window_size,
            "projection_dim": hidden,
            "max_position_embeddings": vision_positions,
            "drop_path_rate": 0.0,
        },
        text_config={
            "model_type": "bart",
            "vocab_size": vocab_size,
            "d_model": hidden,
            "encoder_layers": text_layers,
            "decoder_layers": text_layers,
            "encoder_attention_heads": text_heads,
            "decoder_attention_heads": text_heads,
            "encoder_ffn_dim": 4 * hidden,
            "decoder_ffn_dim": 4 * hidden,
            "max_position_embeddings": text_positions,
            "pad_token_id": pad_token_id,
            "bos_token_id": bos_token_id,
            "eos_token_id": eos_token_id,
            "decoder_start_token_id": eos_token_id,
            "forced_bos_token_id": bos_token_id,
            "forced_eos_token_id": eos_token_id,
        },
        image_token_id=image_token_id,
    )


def image_token_count(image_size: int) -> int:
    """Image tokens DaViT produces: it downsamples 32x, plus one pooled token."""
    return (image_size // 32) ** 2 + 1


def tiny_florence2_config(size: TinySize, vocab_size: int, image_token_id: int, **token_ids):
    """Florence-2 config of a tiny size (`TinySize`); `token_ids`: pad/bos/eos ids of the tokenizer."""
    return florence2_config(
        depths=[1, 1, size.vision_layers, 1],
        embed_dim=[16, 32, 48, size.vision_hidden],
        heads=[1, 2, 3, 4],
        window_size=2,
        vision_positions=16,
        hidden=size.text_hidden,
        text_layers=size.text_layers,
        text_heads=size.heads,
        text_positions=512,
        vocab_size=vocab_size,
        image_token_id=image_token_id,
        **token_ids,
    )


def build_tiny(out_dir: str | Path, size: TinySize | None = None, seed: int = 0) -> Path:
    """Build, save and return the directory of a tiny random-weight Florence-2 (4-stage DaViT + BART) with its
    processor."""
    from transformers import CLIPImageProcessorPil

    size = size or TinySize()
    tokenizer = build_bart_tokenizer()
    image_processor = CLIPImageProcessorPil(
        size={"height": size.image_size, "width": size.image_size},
        do_center_crop=False,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    image_processor.image_seq_length = image_token_count(size.image_size)
    processor = Florence2Processor(
        image_processor=image_processor, tokenizer=tokenizer, post_processor_config=POST_PROCESSOR_CONFIG
    )
    vocab_size = (len(tokenizer) + 63) // 64 * 64
    config = tiny_florence2_config(
        size,
        vocab_size,
        tokenizer.image_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config)
    generation = model.generation_config
    generation.pad_token_id, generation.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    generation.decoder_start_token_id, generation.forced_bos_token_id = tokenizer.eos_token_id, tokenizer.bos_token_id
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


# --- benchmark architectures (`meterread bench --size tiny|full`) ----------------------------------------------------

BART_TOKEN_IDS = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}


def architecture(size: str) -> Architecture:
    """Florence-2-base (`full`) or the project's tiny Florence-2 (`tiny`), for a random-weight benchmark."""
    if size == "tiny":
        tiny = TinySize()
        config = tiny_florence2_config(tiny, vocab_size=1024, image_token_id=1000, **BART_TOKEN_IDS)
        return Architecture(config, tiny.image_size, image_token_count(tiny.image_size))
    # florence-community/Florence-2-base: DaViT (4 stages) at 768 px + BART-base (6 + 6 layers)
    config = florence2_config(
        depths=[1, 1, 9, 1],
        embed_dim=[128, 256, 512, 1024],
        heads=[4, 8, 16, 32],
        window_size=12,
        vision_positions=50,
        hidden=768,
        text_layers=6,
        text_heads=12,
        text_positions=1024,
        vocab_size=51289,
        image_token_id=51288,
        **BART_TOKEN_IDS,
    )
    return Architecture(config, 768, image_token_count(768))


def synthetic_inputs(arch: Architecture, batch_size: int, device, dtype, prompt_tokens: int = 8) -> dict:
    """Fixed-shape benchmark inputs: random pixels, the image placeholders, then `<s>` and a task-length prompt."""
    size, tokens = arch.image_size, arch.image_tokens
    pixels = torch.randn(batch_size, 3, size, size, device=device, dtype=dtype)
    ids = torch.full((batch_size, tokens + prompt_tokens), 100, dtype=torch.long, device=device)
    ids[:, :tokens] = arch.config.image_token_id
    ids[:, tokens] = 0  # <s> before the task prompt
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels}
