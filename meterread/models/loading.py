"""Loading weights the safe way: hub id or local dir, safetensors only, no remote code, strict LoRA adapters."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch


def adapter_cache() -> Path:
    """`$METERREAD_CACHE/adapters` (default `~/.cache/meterread/adapters`)."""
    return Path(os.environ.get("METERREAD_CACHE", Path.home() / ".cache" / "meterread")) / "adapters"


def fetch_adapter(adapter: str) -> str:
    """Local directory for an adapter given as a local dir or an fsspec URL (downloaded once into a cache)."""
    if "://" not in adapter or adapter.startswith("file://"):
        path = Path(adapter.removeprefix("file://"))
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"adapter {adapter!r} has no adapter_config.json")
        return str(path)
    from meterread.storage import resolve

    fs, root = resolve(adapter)
    target = adapter_cache() / hashlib.sha256(adapter.encode()).hexdigest()[:16]
    if not (target / "adapter_config.json").is_file():
        target.mkdir(parents=True, exist_ok=True)
        for path in fs.find(root):
            name = path[len(root) :].lstrip("/")
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(fs.cat_file(path))
    return str(target)


def load_adapter_strict(model: torch.nn.Module, adapter_dir: str) -> torch.nn.Module:
    """Apply a PEFT LoRA adapter and merge it; any key mismatch is an error, not a warning."""
    from peft import PeftConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = Path(adapter_dir) / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"adapter {adapter_dir} has no adapter_model.safetensors (pickled weights are refused)")
    config = PeftConfig.from_pretrained(adapter_dir)
    config.inference_mode = True
    peft_model = get_peft_model(model, config)
    state = load_file(str(weights))
    result = set_peft_model_state_dict(peft_model, state)
    expected = {name for name, _ in peft_model.named_parameters() if "lora_" in name}
    missing = [name for name in result.missing_keys if "lora_" in name]
    if result.unexpected_keys or missing or not expected:
        raise ValueError(
            f"adapter {adapter_dir} does not fit the base model: "
            f"{len(result.unexpected_keys)} unexpected keys (e.g. {list(result.unexpected_keys)[:3]}), "
            f"{len(missing)} missing LoRA keys (e.g. {missing[:3]})"
        )
    return peft_model.merge_and_unload()


def load_model(model_class, spec) -> tuple[torch.nn.Module, str | None]:
    """Base weights (hub id or local dir; safetensors only; `HF_HUB_OFFLINE` respected; no remote code),
    the spec's adapter merged in strictly, on the spec's device and dtype, in eval mode.
    Returns the model and the adapter's local directory (None without an adapter)."""
    from meterread.models.base import local_files_only, resolve_device, resolve_dtype

    device = resolve_device(spec.device)
    model = model_class.from_pretrained(
        spec.base,
        dtype=resolve_dtype(spec.dtype, device),
        attn_implementation="sdpa",
        use_safetensors=True,
        local_files_only=local_files_only(),
    )
    adapter_dir = fetch_adapter(spec.adapter) if spec.adapter else None
    if adapter_dir:
        model = load_adapter_strict(model, adapter_dir)
    return model.to(device).eval(), adapter_dir
