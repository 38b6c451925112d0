"""Do pretrained text features carry over to unseen meter makes? PP-OCRv4 fine-tuned on the strips: a measurement.

    .venv/bin/python scripts/ceiling_ppocr.py STRIPS_DIR [--steps 1200] [--batch-size 24] [--width 192 --stretch 1]

The only pretrained visual weights on this machine are PP-OCRv4's recogniser inside `rapidocr-onnxruntime`'s wheel
(Apache-2.0; `make install` adds it for the PP-OCRv4 baseline). `meterread.models.ppocr_import.published_model`
copies them into the project's native network (`meterread.models.ppocr_network`) with a 12-class CTC head (blank,
`0-9`, `.`) whose rows are the published head's rows for those characters, so step 0 is PP-OCRv4 itself restricted
to digits (checked against onnxruntime on every start). The whole network then trains on STRIPS_DIR's train/ with
CTC, reading test/ (seen makes) and heldout/ (unseen makes) every `--eval-every` steps, like
`scripts/ceiling_crnn.py` (same loading, decoding and per-model report). docs/training.md ("Pretrained features")
records what it measured.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from ceiling_crnn import load_split, report
from torch import nn

from meterread.models.ppocr_import import published_model


class PretrainedReader(nn.Module):
    """48 x W strip -> W / 8 columns of (blank + CHARSET) logits: the published recogniser, digits only."""

    def __init__(self):
        super().__init__()
        self.model = published_model()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def to_input(images: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
    """PP-OCR's input scaling ((x - 0.5) / 0.5, BGR as rapidocr feeds it); with `rng`, contrast, brightness and
    noise jitter first (clamped to the pixel range)."""
    x = torch.tensor(images).permute(0, 3, 1, 2).float() / 255
    if rng is not None:
        n = len(x)
        contrast = torch.tensor(rng.uniform(0.4, 1.3, (n, 1, 1, 1))).float()
        x = (x - 0.5) * contrast + 0.5 + torch.tensor(rng.uniform(-0.2, 0.2, (n, 1, 1, 1))).float()
        x = (x + torch.randn_like(x) * float(rng.uniform(0, 0.05))).clamp(0, 1)
    return (x - 0.5) / 0.5


def main() -> None:
    import ceiling_crnn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strips", type=Path)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-every", type=int, default=300)
    parser.add_argument("--width", type=int, default=192, help="input width in pixels (PP-OCR reads W / 8 columns)")
    parser.add_argument(
        "--stretch",
        type=float,
        default=1.0,
        help="widen every strip this many times (digits are "
        "narrower than the CJK characters PP-OCR was trained on: more columns per digit)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    # ceiling_crnn's loss and report() read images through its to_tensor: PP-OCR's scaling instead
    ceiling_crnn.to_tensor = lambda images, rng=None, heavy=False: to_input(images, rng)
    started = time.time()
    shape = {"width": args.width, "stretch": args.stretch}
    train = load_split(args.strips / "train", **shape)
    test, heldout = load_split(args.strips / "test", **shape), load_split(args.strips / "heldout", **shape)
    net, rng = PretrainedReader(), np.random.default_rng(0)
    print(
        f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M trainable parameters (import checked against "
        "onnxruntime)",
        flush=True,
    )
    print("step 0 (PP-OCRv4 restricted to digits):", flush=True)
    report("seen-model test strips", net, test)
    report("held-out-model strips", net, heldout)
    optimizer = torch.optim.AdamW(net.parameters(), args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.steps, pct_start=0.1)
    for step in range(1, args.steps + 1):
        batch = rng.integers(0, len(train[0]), args.batch_size)
        loss = ceiling_crnn.ctc_loss(net, train[0][batch], [train[1][i] for i in batch], rng)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5)
        optimizer.step()
        schedule.step()
        if step % 50 == 0:
            print(f"step {step}: loss {loss.item():.3f}, {time.time() - started:.0f} s", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            report("seen-model test strips", net, test)
            report("held-out-model strips", net, heldout)


if __name__ == "__main__":
    main()
