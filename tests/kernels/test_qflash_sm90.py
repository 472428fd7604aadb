"""The Hopper (sm90) Gluon kernel: compiled for sm90 anywhere (no GPU needed), and bit-exact with the qflash
reference on the shapes it takes on an sm90 GPU (Gluon does not run in the Triton interpreter)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from helpers import random_qkv
from qflash_kernels import qflash_reference
from qflash_kernels.scales import ScaleRule

on_sm90 = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9,
    reason="the Gluon kernel runs on an sm90 GPU (Hopper) only; the Triton kernel covers every other device",
)


@pytest.mark.parametrize("block_m, early_score", [(64, False), (64, True), (128, False)])
def test_sm90_kernel_compiles_to_int8_wgmma(block_m, early_score):
    # the Gluon source type-checks and lowers for sm90 on any machine (in a process without
    # TRITON_INTERPRET, which would turn its helpers into interpreted functions): int8 warpgroup MMAs,
    # TMA copies, and no shuffles for the P operand beyond the two row reductions
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(pathlib.Path(__file__).with_name("sm90_aot.py")), str(block_m),
                           str(int(early_score))], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ptx = json.loads(done.stdout.splitlines()[-1])
    assert ptx["int8_wgmma"] >= 2 and ptx["tma_loads"] >= 3
    assert ptx["shuffles"] <= 10


# (Z, H, N): ViT-T/S/B, one key, exactly one and two tiles, one past a tile, a long head, odd sizes
SHAPES = [(3, 3, 197), (2, 6, 197), (1, 12, 197), (2, 2, 1), (2, 1, 64), (1, 2, 128), (3, 2, 65),
          (1, 1, 1000), (5, 3, 50), (2, 1, 255)]


def _run(q, k, v, rule):
    from qflash_kernels.jit.qflash_launch import qflash_triton

    scales = rule.compute(q, k, v)
    return qflash_triton(q, k, v, scales=scales, hopper=True), qflash_reference(q, k, v, scales)


@on_sm90
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_sm90_equals_reference(rng, shape, dtype):
    z, h, n = shape
    q, k, v = random_qkv(rng, z, h, n, 64, dtype=dtype, device="cuda")
    out, ref = _run(q, k, v, ScaleRule("sample"))
    assert out.shape == ref.shape and out.dtype == dtype
    assert torch.equal(out, ref)


@on_sm90
@pytest.mark.parametrize("granularity", ["batch", "sample"])
def test_sm90_peaked_and_flat_scores(rng, granularity):
    # large logits (one key dominates: exponents saturate) and near-zero ones (every key equal)
    for spread in (40.0, 1e-3):
        q, k, v = random_qkv(rng, 4, 3, 197, 64, device="cuda", spread=spread)
        out, ref = _run(q, k, v, ScaleRule(granularity))
        assert torch.equal(out, ref)


@on_sm90
@pytest.mark.parametrize("shape", [(3, 3, 197), (16, 3, 197), (2, 2, 65)])
def test_sm90_op_with_fused_scales(rng, shape):
    # scales found in the one-pass amax + int8 launch, as qflash_attention does on the GPU
    from qflash_kernels.jit.qflash_launch import qflash_triton

    q, k, v = random_qkv(rng, *shape, 64, device="cuda")
    ref = qflash_reference(q, k, v, ScaleRule("sample").compute(q, k, v))
    assert torch.equal(qflash_triton(q, k, v, hopper=True), ref)


@on_sm90
@pytest.mark.parametrize("block_m", [64, 128])
def test_sm90_block_rows(rng, block_m):
    from qflash_kernels import gluon
    from qflash_kernels.jit.quantize import quantize_qkv

    q, k, v = random_qkv(rng, 2, 3, 197, 64, device="cuda")
    scales = ScaleRule("sample").compute(q, k, v)
    q8, k8, v8, _ = quantize_qkv(q, k, v, scales)
    out = torch.empty_like(q)
    gluon.launch_qflash_sm90(q8, k8, v8.transpose(2, 3), out, scales, block_m=block_m)
    assert torch.equal(out, qflash_reference(q, k, v, scales))


@on_sm90
def test_sm90_refuses_what_it_does_not_take(rng):
    from qflash_kernels.jit.qflash_launch import qflash_triton

    q, k, v = random_qkv(rng, 2, 2, 50, 32, device="cuda")
    with pytest.raises(ValueError, match="Hopper kernel takes"):
        qflash_triton(q, k, v, hopper=True)
