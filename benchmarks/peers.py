"""The kernels a user would pick instead, loaded when present: SageAttention (PyPI, optional extra) and the
paper's own QFlash code from ../shared/peers/qflash_official (never imported by the product)."""
from __future__ import annotations

import pathlib
import sys
from typing import Callable, Optional

PAPER_PEER = pathlib.Path(__file__).resolve().parents[2] / "shared" / "peers" / "qflash_official"
SAGE_HEAD_DIMS = (64, 96, 128)


def sage(q, k, v) -> tuple[Optional[Callable], Optional[str]]:
    """SageAttention 1.x (int8 Q.K^T with smoothed K, fp16 P.V, float softmax) on (Z, H, N, D) fp16."""
    try:
        from sageattention import sageattn
    except ImportError as err:
        return None, f"sageattention not installed ({err})"
    if q.shape[-1] not in SAGE_HEAD_DIMS:
        return None, f"SageAttention takes head dims {SAGE_HEAD_DIMS}, not {q.shape[-1]}"
    return (lambda: sageattn(q, k, v, tensor_layout="HND", is_causal=False)), None


def paper_module(path: pathlib.Path = PAPER_PEER):
    """The paper's `qflash` class (forward = its op), or None when its code is absent."""
    if not (path / "qflash").is_dir():
        return None
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    from qflash import qflash

    return qflash


def paper_kernel(qflash, q, k, v, attn_mask=None) -> Callable:
    """The paper's kernel launch alone, on Q/K/V its op has already quantized: its op builds this closure
    for its own latency mode, which is caught here instead of timed."""
    import triton.testing

    caught = {}
    real = triton.testing.do_bench
    triton.testing.do_bench = lambda fn, **kw: caught.setdefault("kernel", fn) and 0.0
    try:
        qflash.forward(q, k, v, attn_mask=attn_mask, return_mode="latency")
    finally:
        triton.testing.do_bench = real
    return caught["kernel"]
