"""`meterread bench --size tiny|full`: a real architecture built from config with random weights, generating a fixed
number of tokens per image, against a FLOP-based upper bound. Meant for a GPU box; imports neither Prefect nor s3fs
(nor typer).

Everything about a family comes from its module in the registry (`meterread.models.registry`): `architecture(size)`
(the published `full` model or the project's `tiny` one), `MODEL_CLASS` and `synthetic_inputs(...)`.
"""

from __future__ import annotations

import time

from meterread.bench import BenchConfig, rate

PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def build_random(model_class, config, device, dtype):
    """Random-weight `model_class` of `config` (seeded), built directly on `device` in `dtype`, in eval mode."""
    import torch

    torch.manual_seed(0)
    with torch.device(device):
        model = model_class._from_config(config, dtype=dtype)
    return model.eval()


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


def flops_per_image(model, inputs: dict, new_tokens: int) -> float:
    """Counted FLOPs (matmul, conv, attention) of generating for `inputs`, a batch of one image, with torch's FLOP
    counter."""
    from torch.utils.flop_counter import FlopCounterMode

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
    from meterread.models.registry import family_module

    family = family_module(config.family)
    device = resolve_device(config.device)
    dtype = resolve_dtype("auto", device)
    arch = family.architecture(config.size)
    model = build_random(family.MODEL_CLASS, arch.config, device, dtype)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"{config.family} {config.size}: {parameters / 1e6:,.1f}M parameters on {device} in {dtype}")
    flops = flops_per_image(model, family.synthetic_inputs(arch, 1, device, dtype), config.new_tokens)
    if config.compile:
        model.forward = torch.compile(model.forward, dynamic=False)
    inputs = family.synthetic_inputs(arch, config.batch_size, device, dtype)
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
