"""SQNR (dB) of qflash, qflash_paper, ivit and the int8-Q/K/V float-softmax ablation against float64 attention.

python -m benchmarks.sqnr [--seeds 5] [--granularity batch]
Uniform [-4, 4) fp16 inputs, the paper's workloads at one image each; median and minimum over seeds.
"""
from __future__ import annotations

import argparse
import math
import statistics

import torch

import qflash_kernels as qk

from qflash_eval.workloads import WORKLOADS


def sqnr_db(out: torch.Tensor, ref: torch.Tensor) -> float:
    return 20 * math.log10(ref.norm().item() / (out.double() - ref).norm().item())


def measure(name: str, seed: int, granularity: str) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    q, k, v = [(torch.rand(WORKLOADS[name], generator=g) * 8 - 4).half() for _ in range(3)]
    ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
    return {
        "qflash": sqnr_db(qk.qflash_attention(q, k, v, granularity=granularity, backend="reference"), ref),
        "qflash_paper": sqnr_db(qk.qflash_paper_attention(q, k, v, granularity=granularity, backend="reference"), ref),
        "ivit16": sqnr_db(qk.ivit_attention(q, k, v, granularity=granularity, output_bits=16), ref),
        "ivit8": sqnr_db(qk.ivit_attention(q, k, v, granularity=granularity, output_bits=8), ref),
        "int8qkv": sqnr_db(qk.int8qkv_attention(q, k, v, granularity=granularity), ref),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--granularity", default="batch", choices=["batch", "sample"])
    args = p.parse_args(argv)
    cols = ["qflash", "qflash_paper", "ivit16", "ivit8", "int8qkv"]
    print(f"SQNR dB vs float64 attention, uniform [-4,4) fp16, {args.granularity} granularity, "
          f"median (min) of {args.seeds} seeds")
    print("| workload (Z,H,N,D) | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for name, shape in WORKLOADS.items():
        runs = [measure(name, s, args.granularity) for s in range(args.seeds)]
        cells = [f"{statistics.median(r[c] for r in runs):.2f} ({min(r[c] for r in runs):.2f})" for c in cols]
        print(f"| {name} {shape} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
