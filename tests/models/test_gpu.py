"""The GPU path: bf16 on CUDA reads what fp32 on CPU reads. Marked `gpu`: skipped without CUDA (see conftest)."""

import numpy as np
import pytest

from meterread.config import ModelSpec
from meterread.models.registry import load_reader

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("family", ["paligemma", "florence2"])
def test_cuda_bf16_reads_like_cpu_fp32(family, request):
    base = request.getfixturevalue(f"tiny_{family}")
    cpu = load_reader(ModelSpec(family=family, base=base, device="cpu"))
    gpu = load_reader(ModelSpec(family=family, base=base, device="cuda"))
    assert gpu.device.type == "cuda"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    on_cpu = [p.text for p in cpu.read(images, [cpu.default_prompt] * 4)]
    on_gpu = [p.text for p in gpu.read(images, [gpu.default_prompt] * 4)]
    assert sum(a == b for a, b in zip(on_cpu, on_gpu)) >= 3  # bf16 may flip a near-tie; most must agree
