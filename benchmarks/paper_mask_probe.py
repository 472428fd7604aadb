"""Why the paper's masked kernel is wrong in the Triton interpreter and not on the GPU: one Swin-shaped case
run both ways on the same inputs, the differing rows set against the entries its mask conversion overflows.

python -m benchmarks.paper_mask_probe [--peer ../shared/peers/qflash_official]   (on a CUDA machine)
An entry of timm's -100 shift mask plus a positive bias is not below -100, so the published code converts
it; in float16 that overflows to -inf and becomes INT_MIN as int32 (docs/algorithm.md). qk + INT_MIN wraps
to a large positive score where qk < 0: the row's maximum becomes a masked key.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import torch

from .peers import PAPER_PEER, paper_module

WINDOWS, IMAGES, HEADS, N, D = 4, 2, 3, 49, 32


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = WINDOWS * IMAGES
    q, k, v = [(torch.rand(z, HEADS, N, D, generator=g) * 8 - 4).half() for _ in range(3)]
    bias = torch.randn(HEADS, N, N, generator=g) * 2
    mask = torch.where(torch.rand(WINDOWS, N, N, generator=g) < 0.3, -100.0, 0.0)
    mask[:, torch.arange(N), torch.arange(N)] = 0.0
    full = (bias.unsqueeze(0) + mask.unsqueeze(1)).half()  # (W, H, N, N), summed in the model dtype as timm does
    attn_mask = full.unsqueeze(0).expand(IMAGES, -1, -1, -1, -1).reshape(z, HEADS, N, N).contiguous()
    return q, k, v, attn_mask


def overflowing_entries(q, k, attn_mask):
    """(entries the published conversion turns into INT_MIN, the integer Q.K^T there), from its description:
    int8 Q/K at one scale each, entries >= -100 converted as b * 1.44269504 / sm_scale in float16."""
    s_q, s_k = q.float().abs().amax() / 127, k.float().abs().amax() / 127
    sm_scale = (s_q * s_k).item() / math.sqrt(D) * 1.44269504
    q8 = torch.clamp(torch.round(q.float() / s_q), -128, 127)
    k8 = torch.clamp(torch.round(k.float() / s_k), -128, 127)
    qk = (q8 @ k8.transpose(-1, -2)).long()
    converted = attn_mask.float() * 1.44269504 / sm_scale
    overflow = (attn_mask.float() >= -100) & (converted.abs() > 65504)
    return overflow, qk


def interpreted(peer: str, q, k, v, attn_mask):
    """The paper's op in the Triton interpreter, in a fresh process (TRITON_INTERPRET is read at import)."""
    with tempfile.TemporaryDirectory() as tmp:
        torch.save((q, k, v, attn_mask), os.path.join(tmp, "in.pt"))
        code = (f"import sys, torch; sys.path.insert(0, {peer!r}); from qflash import qflash\n"
                f"q, k, v, m = torch.load({os.path.join(tmp, 'in.pt')!r})\n"
                f"torch.save(qflash.forward(q, k, v, attn_mask=m), {os.path.join(tmp, 'out.pt')!r})\n")
        env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
        subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=600)
        return torch.load(os.path.join(tmp, "out.pt"))


def sqnr(out, ref) -> float:
    return 20 * math.log10(ref.norm().item() / (out.double() - ref).norm().item())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--peer", default=str(PAPER_PEER))
    args = p.parse_args(argv)
    qflash = paper_module(__import__("pathlib").Path(args.peer))
    if qflash is None or not torch.cuda.is_available():
        raise SystemExit("needs the paper's code and a CUDA device")
    q, k, v, attn_mask = inputs()
    exact = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(),
                                                             attn_mask=attn_mask.double())
    gpu = qflash.forward(q.cuda(), k.cuda(), v.cuda(), attn_mask=attn_mask.cuda()).cpu()
    cpu = interpreted(args.peer, q, k, v, attn_mask)
    overflow, qk = overflowing_entries(q, k, attn_mask)
    wraps = overflow & (qk < 0)  # qk + INT_MIN wraps to a large positive score
    rows_differ = (gpu != cpu).any(dim=-1)
    rows_wrap = wraps.any(dim=-1)
    rows_overflow = overflow.any(dim=-1)
    converted_gpu = torch.tensor([-float("inf")], device="cuda").half().to(torch.int32).item()
    converted_cpu = torch.tensor([-float("inf")]).half().to(torch.int32).item()
    result = {
        "sqnr_db": {"gpu": round(sqnr(gpu, exact), 2), "interpreter": round(sqnr(cpu, exact), 2)},
        "-inf to int32": {"gpu": converted_gpu, "cpu": converted_cpu},
        "rows": int(rows_differ.numel()), "rows_differing": int(rows_differ.sum()),
        "rows_with_an_overflowing_entry": int(rows_overflow.sum()),
        "rows_with_a_wrapping_entry": int(rows_wrap.sum()),
        "differing_rows_with_a_wrapping_entry": int((rows_differ & rows_wrap).sum()),
        "differing_rows_without_one": int((rows_differ & ~rows_wrap).sum()),
        "gpu_rows_far_from_exact": int(((gpu.double() - exact).abs().amax(-1) > 0.5).sum()),
        "interpreter_rows_far_from_exact": int(((cpu.double() - exact).abs().amax(-1) > 0.5).sum()),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
