"""Warming up the vision encoder of a from-scratch model as a character reader before the VLM trains.

A tiny VLM trained from scratch sits on a plateau (loss = the digits' unconditional entropy) for thousands of steps:
nothing tells the decoder where digit k is until the image features already separate digits. This stage trains
encoder + projector with a small head on the image features, which takes minutes; the VLM then only has to learn to
read them out. Two heads (`TrainConfig.warm_start_head`):

- `positions`: a linear map from the flattened image tokens to every character slot of the reading (`0-9`, `.`,
  padding), trained with cross-entropy. Slot k must be found anew for every reading length.
- `columns`: CTC over the columns of the token grid, left to right (`FRAMES_PER_COLUMN` frames per column): the
  structure of a CRNN (`scripts/ceiling_crnn.py`), so each column's features say which character it shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from meterread.config import WARM_START_HEADS
from meterread.models.base import TrainableReader

CHARSET = "0123456789."
PAD = len(CHARSET)
BLANK = len(CHARSET)  # the CTC blank of the column head (the position head's padding class has the same index)
MAX_CHARS = 12
FRAMES_PER_COLUMN = 2


def characters(label: str) -> list[int]:
    """A reading's characters as CHARSET indices (`,` read as `.`; anything else dropped)."""
    return [CHARSET.index(c) for c in label.replace(",", ".") if c in CHARSET]


def encode_labels(labels: Sequence[str], max_chars: int = MAX_CHARS) -> torch.Tensor:
    """Readings -> (B, max_chars) class indices, right-padded with PAD (`,` read as `.`)."""
    rows = [characters(label)[:max_chars] for label in labels]
    return torch.tensor([row + [PAD] * (max_chars - len(row)) for row in rows], dtype=torch.long)


def greedy_ctc(logits: torch.Tensor) -> list[str]:
    """(B, frames, classes) CTC logits -> best-path readings (repeats merged, blanks dropped)."""
    readings = []
    for path in logits.argmax(-1).tolist():
        kept = [index for i, index in enumerate(path) if index != BLANK and (i == 0 or index != path[i - 1])]
        readings.append("".join(CHARSET[index] for index in kept))
    return readings


def token_grid(tokens: int) -> tuple[int, int]:
    """(side, leading) of the square token grid among `tokens` image tokens: all of them (PaliGemma), or all but one
    leading pooled token (Florence-2's projector puts the spatial mean first). ValueError when they form no grid."""
    side = math.isqrt(tokens)
    if tokens - side * side not in (0, 1):
        raise ValueError(f"warm_start_head 'columns' needs a square grid of image tokens; this model has {tokens}")
    return side, tokens - side * side


def ctc_frames_needed(label: str) -> int:
    """Frames CTC needs to spell `label`: one per character, plus a blank between each pair of repeats."""
    chars = characters(label)
    return len(chars) + sum(a == b for a, b in zip(chars, chars[1:]))


def image_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """(B, tokens, dim) image features as the language model receives them (after the projector)."""
    output = model.get_image_features(pixel_values=pixel_values)
    return getattr(output, "pooler_output", output)


class PositionHead(torch.nn.Module):
    """Linear map from all image tokens to per-position character logits; scored by character accuracy."""

    metric = "character accuracy"

    def __init__(self, tokens: int, dim: int, max_chars: int = MAX_CHARS):
        super().__init__()
        self.max_chars = max_chars
        self.linear = torch.nn.Linear(tokens * dim, max_chars * (PAD + 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.flatten(1)).view(features.shape[0], self.max_chars, PAD + 1)

    def unfit(self, labels: Sequence[str]) -> list[str]:
        """Labels this head cannot hold whole (more characters than its slots)."""
        return [label for label in labels if len(characters(label)) > self.max_chars]

    def loss(self, logits: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
        target = encode_labels(labels, self.max_chars).to(logits.device)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, PAD + 1), target.reshape(-1))

    def accuracy(self, logits: torch.Tensor, labels: Sequence[str]) -> float:
        target = encode_labels(labels, self.max_chars).to(logits.device)
        return float((logits.argmax(-1) == target).float().mean())


class ColumnHead(torch.nn.Module):
    """Per column of the (row-major, square) token grid, `frames` CTC frames of character logits (CHARSET +
    blank), left to right; scored by the share of readings the best path spells exactly. Needs the image as one
    row (a display folded into rows would interleave the reading's ends in each column: `TrainConfig.validate`)."""

    metric = "readings exact"

    def __init__(self, tokens: int, dim: int, frames: int = FRAMES_PER_COLUMN):
        super().__init__()
        (self.side, self.leading), self.frames = token_grid(tokens), frames
        self.linear = torch.nn.Linear(self.side * dim, frames * (BLANK + 1))

    def unfit(self, labels: Sequence[str]) -> list[str]:
        """Labels CTC cannot spell in this head's frames (ctc_loss would count them as zero loss)."""
        return [label for label in labels if ctc_frames_needed(label) > self.side * self.frames]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, _, dim = features.shape
        grid = features[:, self.leading :].reshape(batch, self.side, self.side, dim)  # (B, rows, columns, dim)
        columns = grid.permute(0, 2, 1, 3).reshape(batch, self.side, self.side * dim)
        return self.linear(columns).view(batch, self.side * self.frames, BLANK + 1)

    def loss(self, logits: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
        targets = [characters(label) for label in labels]
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (frames, B, classes)
        return torch.nn.functional.ctc_loss(
            log_probs,
            torch.tensor([c for target in targets for c in target], dtype=torch.long),
            torch.full((len(targets),), logits.shape[1], dtype=torch.long),
            torch.tensor([len(target) for target in targets], dtype=torch.long),
            blank=BLANK,
            zero_infinity=True,  # warm_start_vision refuses such labels up front; this only guards the loss
        )

    def accuracy(self, logits: torch.Tensor, labels: Sequence[str]) -> float:
        wanted = ["".join(CHARSET[c] for c in characters(label)) for label in labels]
        return float(np.mean([got == want for got, want in zip(greedy_ctc(logits), wanted)]))


HEADS: dict[str, type[PositionHead] | type[ColumnHead]] = {"positions": PositionHead, "columns": ColumnHead}


def make_head(kind: str, tokens: int, dim: int) -> PositionHead | ColumnHead:
    """The warm-start head named `kind` (one of WARM_START_HEADS) for `tokens` image tokens of `dim` features."""
    if kind not in HEADS:
        raise ValueError(f"unknown warm start head {kind!r}; choose one of {', '.join(WARM_START_HEADS)}")
    return HEADS[kind](tokens, dim)


def warm_start_vision(
    reader: TrainableReader,
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    steps: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
    log=print,
    head_kind: str = "positions",
) -> float:
    """Train the encoder (+ projector) with the `head_kind` head; returns the final batch's accuracy (characters
    for `positions`, whole readings for `columns`). ValueError, before any step, on labels the head cannot hold."""
    from meterread.models.generation import pixel_values

    if not hasattr(reader.processor, "image_processor"):
        raise ValueError(
            f"warm_start_steps trains a vision-language model's vision tower; the {reader.family} family has none "
            "(a ppocr model starts from pretrained weights: meterread import-ppocr): set warm_start_steps: 0"
        )
    model = reader.model
    processor = reader.processor.image_processor
    mean, std = processor.image_mean, processor.image_std
    with torch.no_grad():
        probe = image_features(model, pixel_values(images[:1], mean, std).to(model.device))
    head = make_head(head_kind, probe.shape[1], probe.shape[2]).to(model.device)
    unfit = head.unfit(labels)
    if unfit:
        raise ValueError(f"{len(unfit)} of {len(labels)} labels do not fit the {head_kind} head (e.g. {unfit[0]!r})")
    encoder_params = [p for name, p in model.named_parameters() if "vision" in name or "projector" in name]
    was_trainable = [p.requires_grad for p in encoder_params]
    for parameter in encoder_params:  # trained here even when the main strategy freezes them (lora)
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(encoder_params + list(head.parameters()), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    accuracy = 0.0
    model.train()
    for step in range(1, steps + 1):
        index = rng.integers(0, len(images), batch_size)
        pixels = pixel_values([images[i] for i in index], mean, std).to(model.device)
        logits = head(image_features(model, pixels))
        batch_labels = [labels[i] for i in index]
        loss = head.loss(logits, batch_labels)
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, step / 50)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder_params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        accuracy = head.accuracy(logits.detach(), batch_labels)
        if step % 100 == 0 or step == steps:
            loss_value = float(loss.detach())
            log(f"vision warm start ({head_kind}) {step}/{steps}: loss {loss_value:.4f}, {head.metric} {accuracy:.3f}")
    for parameter, trainable in zip(encoder_params, was_trainable):
        parameter.requires_grad_(trainable)
    return accuracy
