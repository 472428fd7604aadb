"""Where the paper's kernel on the GPU departs from its own Triton-interpreter run, on heavy-tailed inputs.

python -m benchmarks.paper_gpu_probe [--out DIR]   (on a CUDA machine; the paper's code from ../shared)
1. Two integer primitives on the GPU and in the interpreter: `x >> c` for shift counts outside [0, 31],
   and float -> int32 -> int8 for values outside int32 (inf, NaN, +-3e9).
2. The paper's op on cubed-normal Q/K/V, GPU against interpreter, as published and with its exp2 helper's
   shift count clamped to [0, 31] (negative -> 31): if the clamp makes the two agree, the shift is the step.
3. qflash_paper (batch granularity, Triton and reference) against the paper's GPU run; SQNR of each against
   float attention.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import torch
import triton
import triton.language as tl

from .peers import PAPER_PEER

SHAPES = [(4, 3, 197, 64), (2, 2, 64, 32)]
COUNTS = list(range(-40, -30)) + [-1, 0, 1, 30, 31, 32, 33, 40, 63, 64, 100]
FLOATS = [float("inf"), float("-inf"), float("nan"), 3e9, -3e9, 2147483520.0, 2.0**31, -(2.0**31), 1e10, 127.9]


@triton.jit
def _shift_kernel(X, C, OUT, N: tl.constexpr):
    i = tl.arange(0, N)
    tl.store(OUT + i, tl.load(X + i) >> tl.load(C + i))


@triton.jit
def _cast_kernel(F, OUT32, OUT8, N: tl.constexpr):
    i = tl.arange(0, N)
    as_int = tl.load(F + i).to(tl.int32)
    tl.store(OUT32 + i, as_int)
    tl.store(OUT8 + i, as_int.to(tl.int8))


def primitives(device: str) -> dict:
    n = 32
    counts = torch.tensor((COUNTS * 2)[:n], dtype=torch.int32)
    xs = torch.tensor([-1000, 1000] * (n // 2), dtype=torch.int32)
    out = torch.empty(n, dtype=torch.int32, device=device)
    _shift_kernel[(1,)](xs.to(device), counts.to(device), out, N=n)
    floats = torch.tensor((FLOATS + [0.0] * n)[:16], dtype=torch.float32)
    o32 = torch.empty(16, dtype=torch.int32, device=device)
    o8 = torch.empty(16, dtype=torch.int8, device=device)
    _cast_kernel[(1,)](floats.to(device), o32, o8, N=16)
    return {"shift": [[int(x), int(c), int(r)] for x, c, r in zip(xs, counts, out.cpu())],
            "cast": [[str(f), int(a), int(b)] for f, a, b in zip(floats.tolist()[:len(FLOATS)], o32.cpu(), o8.cpu())]}


@triton.jit
def _exp2_shift_clamped(x, x_rscale, exp_M, SHIFT: tl.constexpr = 16):
    # the published exp2 helper's arithmetic with the final shift count clamped to [0, 31], negative -> 31
    q = ((x * exp_M) >> SHIFT).to(tl.int32)
    r = (x + q * x_rscale).to(tl.int32)
    count = tl.where((q < 0) | (q > 31), 31, q)
    return (((r >> 1) + x_rscale) >> count).to(tl.int32)


def paper_outputs(peer: str, inputs: list, clamp_shift: bool) -> list:
    sys.path.insert(0, peer)
    import qflash.kernel as published
    from qflash import qflash

    if clamp_shift:
        published.exp2_i32_shift = _exp2_shift_clamped
    return [qflash.forward(q, k, v) for q, k, v in inputs]


def run_elsewhere(peer: str, inputs: list, clamp_shift: bool, interpret: bool) -> list:
    """paper_outputs (or primitives, inputs None) in a fresh process: on the GPU, or in the interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(inputs, os.path.join(tmp, "in.pt"))
        what = ("primitives('cpu')" if inputs is None else
                f"paper_outputs({peer!r}, torch.load({os.path.join(tmp, 'in.pt')!r}), {clamp_shift})")
        code = (f"import torch\nfrom benchmarks.paper_gpu_probe import paper_outputs, primitives\n"
                f"torch.save({what}, {os.path.join(tmp, 'out.pt')!r})\n")
        env = dict(os.environ)
        if interpret:
            env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
        subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=900)
        return torch.load(os.path.join(tmp, "out.pt"))


def heavy_tailed(shape, seed: int, device: str) -> list:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(shape, generator=g) ** 3).half().to(device) for _ in range(3)]


def differ(a: torch.Tensor, b: torch.Tensor, step: torch.Tensor) -> dict:
    steps = ((a.float() - b.float()) / step).round().abs()
    return {"fraction_differ": round((a != b).float().mean().item(), 4), "max_steps": int(steps.max().item())}


def sqnr_db(out: torch.Tensor, ref: torch.Tensor) -> float:
    noise = (out.double() - ref.double()).norm().item()
    return round(20 * torch.log10(torch.tensor(ref.double().norm().item() / max(noise, 1e-30))).item(), 2)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--peer", default=str(PAPER_PEER))
    p.add_argument("--out", default="results")
    args = p.parse_args(argv)
    import qflash_kernels as qk

    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "primitives": {"gpu": primitives("cuda"), "interpreter": run_elsewhere(args.peer, None, False, True)}}
    inputs = [heavy_tailed(shape, i, "cuda") for i, shape in enumerate(SHAPES)]
    cpu_inputs = [[t.cpu() for t in x] for x in inputs]
    runs = {}
    for clamp in (False, True):
        name = "shift_clamped" if clamp else "published"
        runs[name] = {"gpu": run_elsewhere(args.peer, inputs, clamp, False),
                      "interpreter": run_elsewhere(args.peer, cpu_inputs, clamp, True)}
    cases = []
    for (q, k, v), shape, i in zip(inputs, SHAPES, range(len(SHAPES))):
        step = v.float().abs().amax() / 127
        exact = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
        ours_triton = qk.qflash_paper_attention(q, k, v, granularity="batch", backend="triton")
        ours_ref = qk.qflash_paper_attention(q, k, v, granularity="batch", backend="reference")
        gpu, interp = runs["published"]["gpu"][i], runs["published"]["interpreter"][i].cuda()
        cases.append({
            "shape": shape,
            "published: gpu vs interpreter": differ(gpu, interp, step),
            "shift clamped: gpu vs interpreter": differ(runs["shift_clamped"]["gpu"][i],
                                                        runs["shift_clamped"]["interpreter"][i].cuda(), step),
            "shift clamped gpu vs published gpu": differ(runs["shift_clamped"]["gpu"][i], gpu, step),
            "ours triton vs published gpu": differ(ours_triton, gpu, step),
            "ours triton vs published interpreter": differ(ours_triton, interp, step),
            "ours triton vs ours reference": differ(ours_triton, ours_ref, step),
            "sqnr_db": {"published gpu": sqnr_db(gpu, exact), "published interpreter": sqnr_db(interp, exact),
                        "ours": sqnr_db(ours_triton, exact)},
        })
    report["cases"] = cases
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "paper-gpu-probe.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
