"""`python -m meterread.bench --training`: one training step of the ppocr recogniser (forward, CTC loss, backward) on
CPU, with channels-last strips (what `PPOCRForCTC` feeds its backbone on CPU) against contiguous ones, interleaved in
one run; and how far their gradients differ (the layout must not change what is learnt, only how fast).

Random strips of the model's own size and random 4-8 digit labels: the step's cost does not depend on the pixels.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

FORMATS = ("channels_last", "contiguous")


def load_recogniser(model: str | None):
    """The ppocr model of `model` (a local dir or hub id; default: the bundled demo model) on CPU; of an ensemble,
    its first member's (what one training stage trains)."""
    from meterread.config import DEMO_MODEL_DIR, ModelSpec
    from meterread.models.ppocr_ensemble import member_readers
    from meterread.models.registry import load_reader

    reader = load_reader(ModelSpec(family="ppocr", base=model or str(DEMO_MODEL_DIR), device="cpu"))
    return member_readers(reader)[0].model


def random_batch(config, batch_size: int, seed: int):
    """(pixel_values, labels) for `batch_size` strips of the config's size; labels 1-based, -100 padded."""
    import torch

    from meterread.models.ppocr import encode_labels

    rng = np.random.default_rng(seed)
    pixels = torch.from_numpy(rng.uniform(-1, 1, (batch_size, 3, config.strip_height, config.strip_width)))
    readings = ["".join(map(str, rng.integers(0, 10, int(rng.integers(4, 9))))) for _ in range(batch_size)]
    return pixels.float(), encode_labels(readings, config.vocab)


def training_step(model, pixels, labels, channels_last: bool) -> tuple[float, object]:
    """Seconds of one forward + backward in the given layout, and the flattened gradient it left."""
    import torch

    model.channels_last_on_cpu = channels_last
    model.zero_grad(set_to_none=True)
    started = time.perf_counter()
    model(pixel_values=pixels, labels=labels).loss.backward()
    seconds = time.perf_counter() - started
    return seconds, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def bench_training(model: str | None = None, batch_size: int = 24, repeats: int = 5, seed: int = 0) -> dict:
    """Median seconds per training step in each layout (after one warm-up step each, alternating) and their ratio.
    Training mode, as `meterread train` runs it: BatchNorm normalises by the batch (its running statistics are
    updated but not read) and the recogniser has no dropout, so every step computes the same gradient."""
    import torch

    recogniser = load_recogniser(model)
    recogniser.train()
    pixels, labels = random_batch(recogniser.config, batch_size, seed)
    seconds: dict[str, list[float]] = {name: [] for name in FORMATS}
    gradients = {}
    for round_ in range(repeats + 1):
        for name in FORMATS:
            took, gradients[name] = training_step(recogniser, pixels, labels, name == "channels_last")
            if round_:  # round 0 warms both up
                seconds[name].append(took)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    reference = gradients["contiguous"]
    return {
        "kind": "training-step",
        "strip": [recogniser.config.strip_height, recogniser.config.strip_width],
        "batch_size": batch_size,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "seconds_per_step": medians,
        "contiguous_over_channels_last": medians["contiguous"] / medians["channels_last"],
        "gradient_relative_difference": float((gradients["channels_last"] - reference).norm() / reference.norm()),
    }


def format_training(results: dict) -> str:
    height, width = results["strip"]
    steps = results["seconds_per_step"]
    return "\n".join(
        [
            f"meterread bench --training: ppocr, {height} x {width} strips, batch {results['batch_size']}, "
            f"torch threads {results['torch_threads']}, median of {results['repeats']}",
            f"  channels-last strips (the default on CPU)  {steps['channels_last']:.3f} s/step",
            f"  contiguous strips                          {steps['contiguous']:.3f} s/step",
            f"  ratio contiguous / channels-last           {results['contiguous_over_channels_last']:.2f}x",
            f"  gradients, relative difference             {results['gradient_relative_difference']:.1e}",
        ]
    )


def training_main(args: argparse.Namespace) -> None:
    """`meterread bench --training`: run, write `--out` (JSON), print the table."""
    if args.batch_size < 1 or args.repeats < 1:
        raise SystemExit("meterread bench: --batch-size and --repeats must be at least 1")
    results = bench_training(args.model, args.batch_size, args.repeats, args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(format_training(results))
    print(f"results: {args.out}")
