"""How far a purpose-built strip reader gets on the real-crop strips: a measurement, not product code.

    python scripts/ceiling_crnn.py STRIPS_DIR [--steps 3000] [--heavy]

STRIPS_DIR is `meterread strips` output (train/, test/, heldout/ with annotations.jsonl). A CRNN (5 conv blocks,
a bidirectional LSTM, CTC over `0-9` and `.`; 0.7 M parameters) trains on train/ and reads test/ (crops of the
seen meter models no training strip used) and heldout/ (meter models no training strip used) every 500 steps,
printing exact match per meter model. `--heavy` adds colour casts, grey and inverted polarity to the per-batch
augmentation. Known flaw, kept so the recorded figures reproduce: every image is standardised after augmenting,
which undoes the brightness and contrast jitter (pixels are not clamped to 0-1 first) except through the noise
ratio. docs/training.md ("Stage 7", ceiling checks) records what it measured and why it
matters for the tiny VLM: it separates "the VLM learns slowly" from "these 15 meter models do not teach unseen
ones".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

HEIGHT, WIDTH = 48, 192
CHARSET = "0123456789."


def load_split(folder: Path, width: int = WIDTH, stretch: float = 1.0) -> tuple[np.ndarray, list[str], list[str]]:
    """Strips resized to HEIGHT and widened `stretch` times (kept up to `width`, wider ones squeezed to it; a
    narrower one's right edge repeated to `width`), their readings and meter models."""
    rows = [json.loads(line) for line in (folder / "annotations.jsonl").open()]
    images = np.zeros((len(rows), HEIGHT, width, 3), np.uint8)
    for i, row in enumerate(rows):
        image = cv2.imread(str(folder / row["image"]))
        height, original_width = image.shape[:2]
        new_width = min(width, max(8, round(original_width * HEIGHT / height * stretch)))
        images[i, :, :new_width] = cv2.resize(image, (new_width, HEIGHT), interpolation=cv2.INTER_AREA)
        images[i, :, new_width:] = images[i, :, new_width - 1 : new_width]
    return images, [row["suffix"] for row in rows], [row["meter_model"] for row in rows]


def to_tensor(images: np.ndarray, rng: np.random.Generator | None = None, heavy: bool = False) -> torch.Tensor:
    """(B, 3, H, W) standardised per image; with `rng`, augmented (noise; `heavy`: colour, grey, inversion)."""
    x = torch.tensor(images).permute(0, 3, 1, 2).float() / 255
    if rng is not None:
        n = len(x)
        contrast = torch.tensor(rng.uniform(0.25 if heavy else 0.4, 1.3, (n, 1, 1, 1))).float()
        x = (x - 0.5) * contrast + 0.5 + torch.tensor(rng.uniform(-0.2, 0.2, (n, 1, 1, 1))).float()
        if heavy:
            x = x * torch.tensor(rng.uniform(0.8, 1.2, (n, 3, 1, 1))).float()
            gray = torch.tensor(rng.random(n) < 0.15).view(n, 1, 1, 1)
            x = torch.where(gray, x.mean(1, keepdim=True).expand_as(x), x)
            inverted = torch.tensor(rng.random(n) < 0.2).view(n, 1, 1, 1)
            x = torch.where(inverted, 1 - x, x)
        x = x + torch.randn_like(x) * float(rng.uniform(0, 0.05))
    mean, std = x.mean((1, 2, 3), keepdim=True), x.std((1, 2, 3), keepdim=True) + 0.03
    return (x - mean) / std


def conv_block(inputs: int, outputs: int, pool) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs), nn.ReLU(), nn.MaxPool2d(pool)]


class CRNN(nn.Module):
    """48x192 image -> 48 columns of (blank + CHARSET) logits."""

    def __init__(self):
        super().__init__()
        self.cnn = nn.Sequential(
            *conv_block(3, 32, 2),
            *conv_block(32, 64, 2),
            *conv_block(64, 128, (2, 1)),
            *conv_block(128, 128, (2, 1)),
            *conv_block(128, 160, (3, 1)),
        )
        self.rnn = nn.LSTM(160, 128, bidirectional=True, batch_first=True)
        self.out = nn.Linear(256, len(CHARSET) + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        columns = self.cnn(x).squeeze(2).permute(0, 2, 1)
        return self.out(self.rnn(columns)[0])


def greedy_decode(logits: torch.Tensor) -> list[str]:
    """CTC best path: collapse repeats, drop blanks (class 0)."""
    texts = []
    for sequence in logits.argmax(-1).tolist():
        previous, text = 0, ""
        for k in sequence:
            if k != previous and k:
                text += CHARSET[k - 1]
            previous = k
        texts.append(text)
    return texts


def ctc_loss(net: CRNN, images: np.ndarray, readings: list[str], rng=None, heavy: bool = False) -> torch.Tensor:
    """Mean CTC loss of `net` on a batch (every strip gets all WIDTH // 4 columns)."""
    targets = [torch.tensor([CHARSET.index(c) + 1 for c in reading]) for reading in readings]
    log_probs = net(to_tensor(images, rng, heavy)).log_softmax(-1).permute(1, 0, 2)  # (T, B, C) for nn.CTCLoss
    lengths = torch.full((len(readings),), log_probs.shape[0])
    ctc = nn.CTCLoss(zero_infinity=True)
    return ctc(log_probs, torch.cat(targets), lengths, torch.tensor([len(t) for t in targets]))


def read_all(net: CRNN, images: np.ndarray) -> list[str]:
    net.eval()
    with torch.no_grad():
        texts = [t for i in range(0, len(images), 200) for t in greedy_decode(net(to_tensor(images[i : i + 200])))]
    net.train()
    return texts


def report(name: str, net: CRNN, split) -> None:
    images, readings, models = split
    right = [a == b for a, b in zip(read_all(net, images), readings)]
    by_model: dict[str, list[bool]] = {}
    for model, ok in zip(models, right):
        by_model.setdefault(model, []).append(ok)
    per_model = " ".join(f"{m}={np.mean(v):.2f}" for m, v in sorted(by_model.items()))
    print(f"  {name}: {np.mean(right):.3f} (n={len(right)}) {per_model}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strips", type=Path)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--heavy", action="store_true")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.time()
    train = load_split(args.strips / "train")
    test, heldout = load_split(args.strips / "test"), load_split(args.strips / "heldout")
    net, rng = CRNN(), np.random.default_rng(0)
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-3, total_steps=args.steps, pct_start=0.1)
    for step in range(1, args.steps + 1):
        batch = rng.integers(0, len(train[0]), args.batch_size)
        loss = ctc_loss(net, train[0][batch], [train[1][i] for i in batch], rng, args.heavy)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5)
        optimizer.step()
        schedule.step()
        if step % 500 == 0 or step == args.steps:
            print(f"step {step}: loss {loss.item():.3f}, {time.time() - started:.0f} s", flush=True)
            report("seen-model test strips", net, test)
            report("held-out-model strips", net, heldout)


if __name__ == "__main__":
    main()
