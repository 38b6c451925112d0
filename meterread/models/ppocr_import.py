"""The published PP-OCRv4 recogniser as a `ppocr` checkpoint: weights read from the ONNX file inside
rapidocr-onnxruntime's wheel (Apache-2.0; `meterread[baseline]` + `onnx`), the 6,625-character head cut to blank +
digits, saved with `save_pretrained` (safetensors). The one way the project gets pretrained visual weights without a
model hub: `meterread import-ppocr OUT`, then train from OUT.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from meterread.models.ppocr_network import DIGITS, HEIGHT_STRIDE, STRIP_HEIGHT, PPOCRConfig, PPOCRForCTC

SOURCE = "rapidocr-onnxruntime: models/ch_PP-OCRv4_rec_infer.onnx (PP-OCRv4 mobile recogniser, Apache-2.0)"


def published_onnx() -> Path:
    """The recogniser's ONNX file in the installed rapidocr-onnxruntime wheel. Raises ModuleNotFoundError naming
    the install when it is missing."""
    try:
        import rapidocr_onnxruntime
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "importing PP-OCRv4 needs rapidocr-onnxruntime and onnx: `make install` (or `pip install "
            "'meterread[baseline]' onnx` and `pip install --no-deps rapidocr-onnxruntime`)"
        ) from error
    return Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"


def graph_weights(path: Path) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The graph's named weights in the order its nodes use them (2-D matmul weights transposed to torch's
    (out, in)), and its character dictionary."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    characters = next(p.value for p in model.metadata_props if p.key == "character").splitlines()
    constants = {
        node.output[0]: numpy_helper.to_array(node.attribute[0].t)
        for node in model.graph.node
        if node.op_type == "Constant"
    }
    constants.update({tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer})
    weights = []
    for node in model.graph.node:
        for name in node.input:
            if name in constants and not name.startswith(("p2o.", "fill_constant")):
                value = constants[name]
                weights.append((name, value.T if node.op_type == "MatMul" else value))
    return weights, characters


def head_rows(characters: list[str], vocab: str = DIGITS) -> list[int]:
    """The published head's classes for blank + `vocab`: blank is class 0, dictionary character k is class k + 1."""
    missing = [c for c in vocab if c not in characters]
    if missing:
        raise ValueError(f"PP-OCRv4's dictionary lacks {missing}")
    return [0] + [characters.index(c) + 1 for c in vocab]


def import_weights(model: PPOCRForCTC, weights: list[tuple[str, np.ndarray]], rows: list[int]) -> None:
    """Copy `weights` into `model` in order (the head cut to `rows`); raises ValueError on any count or shape
    mismatch, naming the first."""
    targets = [
        (name, tensor) for name, tensor in model.state_dict().items() if not name.endswith("num_batches_tracked")
    ]
    if len(targets) != len(weights):
        raise ValueError(f"the ONNX graph has {len(weights)} weights, the network {len(targets)}")
    with torch.no_grad():
        for (name, tensor), (source, value) in zip(targets, weights):
            if name.startswith("head."):
                value = value[rows]
            value = torch.tensor(np.array(value, dtype=np.float32))
            if tuple(value.shape) != tuple(tensor.shape):
                raise ValueError(f"{source} {tuple(value.shape)} does not fit {name} {tuple(tensor.shape)}")
            tensor.copy_(value)


def check_input_shape(image_size: int, strip_width: int, strip_height: int) -> None:
    """Raises ValueError for an odd or too small `image_size` (the square holds two folded rows), a `strip_width`
    that is not a positive multiple of 8 (one CTC column per 8 px) or a `strip_height` that is not a multiple of 16
    (32 at least)."""
    if image_size % 2 or image_size < 48:
        raise ValueError(f"image_size {image_size} must be even and at least 48 (two folded rows, 48 px high)")
    if strip_width < 8 or strip_width % 8:
        raise ValueError(f"strip_width {strip_width} must be a positive multiple of 8 (one CTC column per 8 px)")
    if strip_height < 2 * HEIGHT_STRIDE or strip_height % HEIGHT_STRIDE:
        raise ValueError(f"strip_height {strip_height} must be a multiple of {HEIGHT_STRIDE}, at least 32")


def published_model(
    source: Path | None = None, image_size: int = 96, strip_width: int = 192, strip_height: int = STRIP_HEIGHT
) -> PPOCRForCTC:
    """The published recogniser (digits only) as a `PPOCRForCTC`, checked against onnxruntime (`check_import`) at
    the published 48 px, then set to read `strip_height` px (the weights do not depend on the height). Raises
    ValueError for a shape `check_input_shape` refuses."""
    check_input_shape(image_size, strip_width, strip_height)
    source = source or published_onnx()
    weights, characters = graph_weights(source)
    model = PPOCRForCTC(PPOCRConfig(image_size=image_size, strip_width=strip_width))
    rows = head_rows(characters)
    import_weights(model, weights, rows)
    check_import(model, source, rows)
    model.config.strip_height = strip_height
    return model


def check_import(model: PPOCRForCTC, source: Path, rows: list[int], tolerance: float = 1e-3) -> float:
    """Largest difference between `model`'s log-probabilities and onnxruntime's over the same classes
    (renormalised) on two random strips of the published 48 px (the ONNX graph's fixed height, so `model` must read
    48 px); raises ValueError above `tolerance` (NaN included)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, STRIP_HEIGHT, 192)).astype(np.float32)
    probabilities = session.run(None, {session.get_inputs()[0].name: x})[0][..., rows]
    expected = np.log(probabilities) - np.log(probabilities.sum(-1, keepdims=True))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        got = model(torch.from_numpy(x)).logits.log_softmax(-1).numpy()
    model.train(was_training)
    gap = float(np.abs(got - expected).max())
    if not gap <= tolerance:
        raise ValueError(f"imported PP-OCRv4 differs from onnxruntime by {gap:.2e} (log-probability)")
    return gap


def import_ppocr(
    out_dir: str | Path,
    image_size: int = 96,
    strip_width: int = 192,
    source: Path | None = None,
    strip_height: int = STRIP_HEIGHT,
) -> Path:
    """Save the published recogniser, digits only, as a `ppocr` checkpoint in `out_dir` (with `meterread.json`:
    display crop off, two folded rows, i.e. a strip of (`image_size` / 2) x (`image_size` * 2) read at
    `strip_height` x `strip_width`) and return it. Raises ValueError for a shape `check_input_shape` refuses, before
    anything is read or written."""
    model = published_model(source, image_size, strip_width, strip_height)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    (out / "meterread.json").write_text(json.dumps({"crop_display": False, "display_rows": 2}, indent=2))
    (out / "provenance.json").write_text(json.dumps({"stages": [{"stage": "import", "source": SOURCE}]}, indent=2))
    return out
