"""Loading weights the safe way: hub id or local dir, safetensors only, no remote code, strict LoRA adapters."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from meterread.preprocess import InputLayout

WEIGHTS_FILE = "model.safetensors"  # a full checkpoint's weights, one unsharded file


def adapter_cache() -> Path:
    """`$METERREAD_CACHE/adapters` (default `~/.cache/meterread/adapters`)."""
    from meterread.models.base import cache_root

    return cache_root() / "adapters"


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "meterread.json")


def safe_target(root: Path, name: str) -> Path:
    """`root / name`, refusing a name that is absolute or resolves outside `root` (a key such as
    `adapters/v1/../../home/worker/.bashrc`). Raises ValueError."""
    target = (root / name).resolve()
    if Path(name).is_absolute() or not target.is_relative_to(root.resolve()):
        raise ValueError(f"refusing object name {name!r}: it resolves outside the download folder")
    return target


def fetch_directory(url: str, required: str, wanted: tuple[str, ...] | None = ADAPTER_FILES) -> str:
    """Local directory for a local dir or fsspec URL; a remote one is downloaded into the cache (only the `wanted`
    files, every file when None, keyed by the URL and the objects' etags, so a new upload to the same URL is fetched
    again). It must hold `required`. Raises FileNotFoundError, or ValueError for an object name that would land
    outside the cache."""
    if "://" not in url or url.startswith("file://"):
        path = Path(url.removeprefix("file://"))
        if not (path / required).is_file():
            raise FileNotFoundError(f"{url!r} has no {required}")
        return str(path)
    from meterread.storage import object_etag, resolve, with_retries

    fs, root = resolve(url)
    listing = with_retries(lambda: fs.find(root, detail=True))
    names = {path[len(root) :].lstrip("/"): info for path, info in listing.items()}
    staging = adapter_cache() / "staging"
    for name in names:
        safe_target(staging, name)  # refuse the whole adapter if any key tries to escape
    chosen = {name: info for name, info in names.items() if wanted is None or name in wanted}
    if required not in chosen:
        raise FileNotFoundError(f"{url!r} has no {required}")
    identity = url + "".join(f"|{name}:{object_etag(info)}" for name, info in sorted(chosen.items()))
    target = adapter_cache() / hashlib.sha256(identity.encode()).hexdigest()[:16]
    if not (target / required).is_file():
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        partial.mkdir(parents=True, exist_ok=True)
        for name in chosen:  # streamed to disk (a safetensors file need not fit in memory), each retried
            destination = safe_target(partial, name)
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = f"{root.rstrip('/')}/{name}"
            with_retries(lambda source=source, destination=destination: fs.get_file(source, str(destination)))
        try:
            partial.rename(target)
        except OSError:  # another process fetched the same objects meanwhile
            shutil.rmtree(partial)
    if not (target / required).is_file():
        raise FileNotFoundError(f"{url!r} has no {required} (cache folder {target})")
    return str(target)


def fetch_adapter(adapter: str) -> str:
    """Local directory of a LoRA adapter given as a local dir or an fsspec URL such as s3://bucket/adapters/v3."""
    return fetch_directory(adapter, "adapter_config.json")


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


def model_settings(*directories: str | None) -> dict:
    """The first `meterread.json` found (adapter dir, then base dir): how the model was trained to read."""
    for directory in directories:
        if directory and (Path(directory) / "meterread.json").is_file():
            return json.loads((Path(directory) / "meterread.json").read_text())
    return {}


def input_layout(*directories: str | None) -> InputLayout:
    """The input layout the model was trained with (`meterread.json`; the default layout without one)."""
    return InputLayout.from_dict(model_settings(*directories))


def recommended_min_confidence(*directories: str | None) -> float | None:
    """The `min_confidence` the model recommends (`meterread.json`, measured on validation data), if any."""
    value = model_settings(*directories).get("min_confidence")
    return None if value is None else float(value)


def load_model(model_class, spec) -> tuple[torch.nn.Module, str | None]:
    """Base weights (hub id or local dir; safetensors only; `HF_HUB_OFFLINE` respected; no remote code),
    the spec's adapter merged in strictly, on the spec's device and dtype, in eval mode.

    Attention: transformers' default per sub-model, which is SDPA wherever the architecture supports it (SigLIP,
    Gemma, DaViT, BART) and eager where it does not (Gemma 2's logit soft-capping, i.e. PaliGemma 2's decoder);
    forcing "sdpa" would refuse to load PaliGemma 2.
    Returns the model and the adapter's local directory (None without an adapter)."""
    from meterread.models.base import local_files_only, resolve_device, resolve_dtype

    device = resolve_device(spec.device)
    model = model_class.from_pretrained(
        spec.base,
        dtype=resolve_dtype(spec.dtype, device),
        use_safetensors=True,
        local_files_only=local_files_only(),
    )
    adapter_dir = fetch_adapter(spec.adapter) if spec.adapter else None
    if adapter_dir:
        model = load_adapter_strict(model, adapter_dir)
    model = model.to(device).eval()
    if getattr(spec, "compile", False):
        model.generation_config.cache_implementation = "static"
        model.forward = torch.compile(model.forward, dynamic=False)
    return model, adapter_dir
