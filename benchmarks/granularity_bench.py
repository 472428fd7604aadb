"""The 'head' granularity measured on its own: op time and SQNR beside 'sample', same process, GPU.

python -m benchmarks.granularity_bench [--workloads A1 A3 A4] [--batches 64 256]
timm's strided Q/K/V views (uniform [-4, 4) fp16, each head scaled by its own factor in 0.25-2 so that
heads differ in range as they do in trained models); Swin workloads with their bias and shift mask, one
image = its windows. CUDA-graph medians, ratios to the fastest SDPA fp16 backend, SQNR against float64.
"""
from __future__ import annotations

import argparse

import torch

import qflash_kernels as qk
from qflash_eval.workloads import SWIN_WORKLOADS, WORKLOADS, shape_at_batch

from .timing import SDPA_BACKENDS, graph_median_ms, sdpa_fn, sqnr_db, swin_bias_mask

OPS = {"qflash": qk.qflash_attention, "qflash_paper": qk.qflash_paper_attention, "ivit": qk.ivit_attention}


def head_ranged_views(z: int, h: int, n: int, d: int):
    qkv = torch.rand(z, n, 3, h, d, device="cuda") * 8 - 4
    qkv = qkv * torch.linspace(0.25, 2.0, h, device="cuda").view(1, 1, 1, h, 1)
    return qkv.half().permute(2, 0, 3, 1, 4).unbind(0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workloads", nargs="+", default=["A1", "A3", "A4"])
    p.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    args = p.parse_args(argv)
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| workload | batch | op | granularity | graph ms | x fastest SDPA | head / sample | SQNR dB |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.workloads:
        for batch in args.batches:
            z, h, n, d = shape_at_batch(name, batch)
            q, k, v = head_ranged_views(z, h, n, d)
            kw, attn_mask = {}, None
            if name in SWIN_WORKLOADS:
                bias, mask, attn_mask = swin_bias_mask(name, batch, h, n)
                kw = dict(bias=bias, mask=mask, group=WORKLOADS[name][0])
            fastest = min(graph_median_ms(sdpa_fn(q, k, v, b, attn_mask)) for b in SDPA_BACKENDS
                          if attn_mask is None or b == "efficient")
            exact = torch.nn.functional.scaled_dot_product_attention(
                q.double(), k.double(), v.double(), attn_mask=None if attn_mask is None else attn_mask.double())
            for op_name, op in OPS.items():
                times = {}
                for granularity in ("sample", "head"):
                    def call(granularity=granularity):
                        return op(q, k, v, granularity=granularity, **kw)

                    times[granularity] = graph_median_ms(call)
                    ratio = f"{times['head'] / times['sample']:.3f}" if granularity == "head" else ""
                    print(f"| {name} | {batch} | {op_name} | {granularity} | {times[granularity]:.4f} | "
                          f"{times[granularity] / fastest:.2f} | {ratio} | {sqnr_db(call(), exact):.2f} |", flush=True)
            del q, k, v
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
