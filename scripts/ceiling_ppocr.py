"""Do pretrained text features carry over to unseen meter makes? PP-OCRv4 fine-tuned on the strips: a measurement.

    make research   # onnx + onnx2torch (pinned, --no-deps) into the `make install` venv, which has rapidocr
    .venv/bin/python scripts/ceiling_ppocr.py STRIPS_DIR [--steps 1200] [--batch-size 24]

The only pretrained visual weights on this machine are PP-OCRv4's recogniser inside `rapidocr-onnxruntime`'s wheel
(Apache-2.0; `make install` adds it for the PP-OCRv4 baseline). Its ONNX graph (weights stored as Constant nodes) is
converted to torch with onnx2torch, cut before its 6,625-class head, and given a 12-class CTC head (blank, `0-9`,
`.`) whose rows start as the pretrained head's rows for those characters, so step 0 is PP-OCRv4 itself restricted to
digits (checked against onnxruntime on every start: the converted network must give the same restricted
probabilities). The whole network then trains on STRIPS_DIR's train/ with CTC, reading test/ (seen makes) and
heldout/ (unseen makes) every `--eval-every` steps, like `scripts/ceiling_crnn.py` (same loading, decoding and
per-model report). docs/training.md ("Pretrained features") records what it measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types
from pathlib import Path

import numpy as np
import rapidocr_onnxruntime
import torch
from ceiling_crnn import CHARSET, load_split, report
from torch import nn

MODEL = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"


def digit_rows(characters: list[str]) -> list[int]:
    """The pretrained head's classes for CTC blank + CHARSET: blank is class 0, the dictionary's character k is
    class k + 1 (PaddleOCR's CTC label layout)."""
    return [0] + [characters.index(c) + 1 for c in CHARSET]


def stub_torchvision() -> None:
    """onnx2torch imports torchvision for its NMS and RoiAlign converters only, which this graph does not use; the
    project installs no torchvision (it would pull a CUDA torch). These stand-ins fail if ever called."""

    def missing(*args, **kwargs):
        raise NotImplementedError("torchvision is not installed")

    torchvision, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = missing
    torchvision.ops = ops
    sys.modules.update({"torchvision": torchvision, "torchvision.ops": ops})


def backbone_and_head(path: Path = MODEL) -> tuple[nn.Module, nn.Linear]:
    """PP-OCRv4 rec up to its (B, T, C) sequence features, and a CTC head over blank + CHARSET taken from its own."""
    import onnx

    if importlib.util.find_spec("torchvision") is None:
        stub_torchvision()
    from onnx2torch import convert

    graph_model = onnx.load(str(path))
    characters = next(p.value for p in graph_model.metadata_props if p.key == "character").splitlines()
    constants = {}
    for node in graph_model.graph.node:
        if node.op_type == "Constant":
            tensor = node.attribute[0].t
            tensor.name = node.output[0]
            constants[tensor.name] = tensor
    graph = graph_model.graph
    matmul = next(
        n
        for n in graph.node
        if n.op_type == "MatMul"
        and n.input[1] in constants
        and onnx.numpy_helper.to_array(constants[n.input[1]]).shape[-1] == len(characters) + 2
    )
    add = next(n for n in graph.node if n.op_type == "Add" and matmul.output[0] in n.input)
    weight = onnx.numpy_helper.to_array(constants[matmul.input[1]])  # (C, classes)
    bias = onnx.numpy_helper.to_array(constants[next(i for i in add.input if i in constants)])
    rows = digit_rows(characters)
    head = nn.Linear(weight.shape[0], len(rows))
    with torch.no_grad():
        head.weight.copy_(torch.tensor(weight[:, rows].T))
        head.bias.copy_(torch.tensor(bias[rows]))
    features = matmul.input[0]
    cut = list(graph.node).index(matmul)
    kept = [n for n in graph.node[:cut] if n.op_type != "Constant"]
    graph.initializer.extend(constants.values())
    del graph.node[:]
    graph.node.extend(kept)
    del graph.output[:]
    graph.output.append(onnx.helper.make_tensor_value_info(features, onnx.TensorProto.FLOAT, None))
    for node in kept:  # onnx2torch picks BatchNorm's class from the input's rank, which this graph leaves unknown
        if node.op_type == "BatchNormalization":
            graph.value_info.append(
                onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, ["n", "c", "h", "w"])
            )
    backbone = convert(graph_model)
    store = backbone.initializers  # the neck's attention and norm weights arrive as buffers: train them too
    for name, value in list(store.named_buffers(recurse=False)):
        if value.is_floating_point() and value.numel() > 1:
            del store._buffers[name]
            store.register_parameter(name, nn.Parameter(value))
    return backbone, head


class PretrainedReader(nn.Module):
    """48 x W strip -> W / 8 columns of (blank + CHARSET) logits."""

    def __init__(self):
        super().__init__()
        self.backbone, self.head = backbone_and_head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def check_conversion(net: PretrainedReader, path: Path = MODEL) -> float:
    """Largest difference between the converted network's log-probabilities over blank + CHARSET and onnxruntime's
    (PP-OCRv4 itself) renormalised over the same classes, on random strips; raises when above 1e-3."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path))
    characters = session.get_modelmeta().custom_metadata_map["character"].splitlines()
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 192)).astype(np.float32)
    probabilities = session.run(None, {session.get_inputs()[0].name: x})[0][..., digit_rows(characters)]
    expected = np.log(probabilities) - np.log(probabilities.sum(-1, keepdims=True))
    was_training = net.training
    net.eval()
    with torch.no_grad():
        got = net(torch.tensor(x)).log_softmax(-1).numpy()
    net.train(was_training)
    worst = float(np.abs(got - expected).max())
    if not worst <= 1e-3:  # NaN (a row of probabilities underflowing to 0) fails too
        raise AssertionError(f"converted PP-OCRv4 differs from onnxruntime by {worst:.4f} (log-probability)")
    return worst


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
    args = parser.parse_args()
    torch.manual_seed(0)
    # ceiling_crnn's loss and report() read images through its to_tensor: PP-OCR's scaling instead
    ceiling_crnn.to_tensor = lambda images, rng=None, heavy=False: to_input(images, rng)
    started = time.time()
    train = load_split(args.strips / "train")
    test, heldout = load_split(args.strips / "test"), load_split(args.strips / "heldout")
    net, rng = PretrainedReader(), np.random.default_rng(0)
    print(
        f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M trainable parameters; "
        f"conversion checked against onnxruntime (max log-probability difference {check_conversion(net):.1e})",
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
