"""Warm-starting the vision encoder of a from-scratch model as a per-position character classifier.

A tiny VLM trained from scratch sits on a plateau (loss = the digits' unconditional entropy) for thousands of steps:
nothing tells the decoder where digit k is until the image features already separate digits. This stage trains
encoder + projector with a linear head on the flattened image features to predict every character of the reading
(`0-9`, `.`, padding) at every position, which takes minutes; the VLM then only has to learn to read them out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from meterread.models.base import TrainableReader

CHARSET = "0123456789."
PAD = len(CHARSET)
MAX_CHARS = 12


def encode_labels(labels: Sequence[str], max_chars: int = MAX_CHARS) -> torch.Tensor:
    """Readings -> (B, max_chars) class indices, right-padded with PAD (`,` read as `.`)."""
    rows = []
    for label in labels:
        chars = [CHARSET.index(c) for c in label.replace(",", ".") if c in CHARSET][:max_chars]
        rows.append(chars + [PAD] * (max_chars - len(chars)))
    return torch.tensor(rows, dtype=torch.long)


def image_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """(B, tokens, dim) image features as the language model receives them (after the projector)."""
    output = model.get_image_features(pixel_values=pixel_values)
    return getattr(output, "pooler_output", output)


class PositionHead(torch.nn.Module):
    """Linear map from all image tokens to per-position character logits."""

    def __init__(self, tokens: int, dim: int, max_chars: int = MAX_CHARS):
        super().__init__()
        self.max_chars = max_chars
        self.linear = torch.nn.Linear(tokens * dim, max_chars * (PAD + 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.flatten(1)).view(features.shape[0], self.max_chars, PAD + 1)


def warm_start_vision(
    reader: TrainableReader,
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    steps: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
    log=print,
) -> float:
    """Train the encoder (+ projector) on per-position characters; returns the final batch's character accuracy."""
    from meterread.models.generation import pixel_values

    model = reader.model
    processor = reader.processor.image_processor
    mean, std = processor.image_mean, processor.image_std
    with torch.no_grad():
        probe = image_features(model, pixel_values(images[:1], mean, std).to(model.device))
    head = PositionHead(probe.shape[1], probe.shape[2]).to(model.device)
    encoder_params = [p for name, p in model.named_parameters() if "vision" in name or "projector" in name]
    was_trainable = [p.requires_grad for p in encoder_params]
    for parameter in encoder_params:  # trained here even when the main strategy freezes them (lora)
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(encoder_params + list(head.parameters()), lr=lr, weight_decay=0.01)
    targets = encode_labels(labels)
    rng = np.random.default_rng(seed)
    accuracy = 0.0
    model.train()
    for step in range(1, steps + 1):
        index = rng.integers(0, len(images), batch_size)
        pixels = pixel_values([images[i] for i in index], mean, std).to(model.device)
        logits = head(image_features(model, pixels))
        target = targets[index].to(model.device)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, PAD + 1), target.reshape(-1))
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, step / 50)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder_params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        accuracy = float((logits.argmax(-1) == target).float().mean())
        if step % 100 == 0 or step == steps:
            log(f"vision warm start {step}/{steps}: loss {float(loss.detach()):.4f}, character accuracy {accuracy:.3f}")
    for parameter, trainable in zip(encoder_params, was_trainable):
        parameter.requires_grad_(trainable)
    return accuracy
