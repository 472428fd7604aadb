"""Timing and shared set-up of the GPU benchmarks: medians of eager calls and of CUDA-graph replays, peak
memory, the device's copy bandwidth, PyTorch SDPA per backend, Swin's bias and mask, SQNR."""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from qflash_eval.workloads import WORKLOADS

SDPA_BACKENDS = ("flash", "efficient", "cudnn")


def median_ms(fn: Callable, warmup: int = 25, rep: int = 100) -> float:
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def graph_median_ms(fn: Callable) -> float:
    """Median of calls replayed from a CUDA graph: GPU time without the host's launch time (and, unlike
    do_bench, without flushing L2 between calls)."""
    from triton.testing import do_bench_cudagraph

    return float(do_bench_cudagraph(fn, rep=20, return_mode="median"))


def peak_mib(fn: Callable) -> float:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def copy_bandwidth_gbs() -> float:
    """Device-to-device copy of 1 GiB, bytes read plus written."""
    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    return 2 * src.numel() / ms / 1e6


def sdpa_fn(q, k, v, backend: Optional[str], attn_mask=None):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kinds = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
             "cudnn": SDPBackend.CUDNN_ATTENTION}

    def run():
        if backend is None:
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        with sdpa_kernel([kinds[backend]]):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)

    return run


def swin_bias_mask(name: str, batch: int, h: int, n: int):
    windows = WORKLOADS[name][0]
    bias = torch.randn(h, n, n, device="cuda") * 2
    mask = torch.where(torch.rand(windows, n, n, device="cuda") < 0.3, -100.0, 0.0)
    full = (bias.unsqueeze(0) + mask.unsqueeze(1)).half()  # (windows, H, N, N), as timm adds them
    attn_mask = full.unsqueeze(0).expand(batch, -1, -1, -1, -1).reshape(batch * windows, h, n, n)
    return bias, mask, attn_mask


def sqnr_db(out: torch.Tensor, exact: torch.Tensor) -> float:
    return 20 * math.log10(exact.norm().item() / (out.double() - exact).norm().item())


def cuda_graph_replay(fn: Callable) -> Callable:
    """fn captured once in a CUDA graph (after warm-up calls that compile everything); replaying it
    removes the host's launch time, as a deployment would."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay
