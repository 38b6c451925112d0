"""`meterread bench --size tiny|full`: a real architecture built from config with random weights (PaliGemma-2-3B-224,
Florence-2-base, or the project's tiny ones), generating a fixed number of tokens per image, against a FLOP-based
upper bound. Meant for a GPU box; imports neither Prefect nor s3fs (nor typer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from meterread.bench import BenchConfig, rate

PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


@dataclass(frozen=True)
class Architecture:
    """A model config with what the bench needs to feed it: input side in pixels, image tokens it produces."""

    config: object
    image_size: int
    image_tokens: int


def architecture(family: str, size: str) -> Architecture:
    """The real architecture (`full`: PaliGemma-2-3B-224 / Florence-2-base) or the project's tiny one (`tiny`)."""
    from meterread.models.florence2 import florence2_config, tiny_florence2_config
    from meterread.models.tiny import TinySize, tiny_paligemma_config

    tiny = TinySize()
    ids = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
    if family == "paligemma" and size == "tiny":
        config = tiny_paligemma_config(tiny, vocab_size=1024, image_token_index=1000, **ids)
        return Architecture(config, tiny.image_size, (tiny.image_size // tiny.patch_size) ** 2)
    if family == "paligemma":
        from transformers import PaliGemmaConfig

        # google/paligemma2-3b-pt-224: SigLIP So400m/14 at 224 px + Gemma 2 2B
        config = PaliGemmaConfig(
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
        return Architecture(config, 224, (224 // 14) ** 2)
    if size == "tiny":
        config = tiny_florence2_config(tiny, vocab_size=1024, image_token_id=1000, **ids)
        return Architecture(config, tiny.image_size, (tiny.image_size // 32) ** 2 + 1)
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
        **ids,
    )
    return Architecture(config, 768, (768 // 32) ** 2 + 1)  # DaViT downsamples 32x, plus one pooled token


def build_architecture(arch: Architecture, device, dtype):
    """Random-weight model of the architecture, built directly on `device` in `dtype`."""
    import torch
    from transformers import Florence2ForConditionalGeneration, PaliGemmaForConditionalGeneration

    paligemma = arch.config.model_type == "paligemma"
    model_class = PaliGemmaForConditionalGeneration if paligemma else Florence2ForConditionalGeneration
    torch.manual_seed(0)
    with torch.device(device):
        model = model_class._from_config(arch.config, dtype=dtype)
    return model.eval()


def synthetic_inputs(arch: Architecture, batch_size: int, device, dtype, prompt_tokens: int = 8) -> dict:
    """Fixed-shape inputs: image placeholders + a short prompt (PaliGemma), or the task prompt (Florence-2)."""
    import torch

    size, tokens = arch.image_size, arch.image_tokens
    pixels = torch.randn(batch_size, 3, size, size, device=device, dtype=dtype)
    if arch.config.model_type == "paligemma":
        ids = torch.full((batch_size, tokens + prompt_tokens), 2, dtype=torch.long, device=device)
        ids[:, :tokens] = arch.config.image_token_id
        ids[:, tokens + 1 :] = 100
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids),
            "pixel_values": pixels,
        }
    ids = torch.full((batch_size, tokens + prompt_tokens), 100, dtype=torch.long, device=device)
    ids[:, :tokens] = arch.config.image_token_id
    ids[:, tokens] = 0  # <s> before the task prompt
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels}


def generate_fixed(model, inputs: dict, new_tokens: int, static_cache: bool):
    """Greedy generation of exactly `new_tokens` tokens (EOS disabled) on fixed shapes."""
    import torch

    with torch.inference_mode():
        return model.generate(
            **inputs,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=None,
            pad_token_id=0,
            cache_implementation="static" if static_cache else None,
        )


def flops_per_image(model, arch: Architecture, device, dtype, new_tokens: int) -> float:
    """Counted FLOPs (matmul, conv, attention) of one image's generation, with torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    inputs = synthetic_inputs(arch, 1, device, dtype)
    counter = FlopCounterMode(display=False)
    with counter:
        generate_fixed(model, inputs, new_tokens, static_cache=False)
    return float(counter.get_total_flops())


def device_peak_tflops(device, override: float | None) -> float | None:
    """Dense bf16 peak of the device, from its name (None when unknown and not given)."""
    import torch

    if override:
        return override
    if getattr(device, "type", str(device)) != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def bench_architecture(config: BenchConfig, log=print) -> dict:
    """Model-only images/s of a random-weight architecture at fixed shapes, vs the FLOP upper bound."""
    import torch

    from meterread.models.base import resolve_device, resolve_dtype

    device = resolve_device(config.device)
    dtype = resolve_dtype("auto", device)
    arch = architecture(config.family, config.size)
    model = build_architecture(arch, device, dtype)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"{config.family} {config.size}: {parameters / 1e6:,.1f}M parameters on {device} in {dtype}")
    flops = flops_per_image(model, arch, device, dtype, config.new_tokens)
    if config.compile:
        model.forward = torch.compile(model.forward, dynamic=False)
    inputs = synthetic_inputs(arch, config.batch_size, device, dtype)
    for _ in range(2 if config.compile else 1):  # warm-up (and compilation)
        generate_fixed(model, inputs, config.new_tokens, static_cache=config.compile)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    started = time.perf_counter()
    for _ in range(config.repeats):
        generate_fixed(model, inputs, config.new_tokens, static_cache=config.compile)
    synchronize()
    images_per_s = rate(config.batch_size * config.repeats, time.perf_counter() - started)
    peak = device_peak_tflops(device, config.peak_tflops)
    bound = peak * 1e12 / flops if peak else None
    return {
        "kind": "architecture",
        "family": config.family,
        "size": config.size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype),
        "parameters": parameters,
        "image_tokens": arch.image_tokens,
        "new_tokens": config.new_tokens,
        "batch_size": config.batch_size,
        "compile": config.compile,
        "images_per_s": images_per_s,
        "flops_per_image": flops,
        "peak_tflops": peak,
        "flop_bound_images_per_s": bound,
        "fraction_of_flop_bound": images_per_s / bound if bound else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }
