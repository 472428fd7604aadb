"""The paper's own QFlash code beside qflash_paper and qflash, on the GPU: speed, SQNR and agreement.

python -m benchmarks.paper_peer [--peer ../shared/peers/qflash_official] [--batches 64 256]
Its op (quantize, host sync, kernel, dequantize) cannot be captured in a CUDA graph, so it is timed eagerly
(do_bench median); its kernel alone by its own latency mode (do_bench median of the launch, int8 ready);
ours as graph medians and eager medians. Also: how often its output differs from qflash_paper in 'batch'
granularity, without and with Swin's bias + mask, and what its mask conversion turns -inf into here.
"""
from __future__ import annotations

import argparse
import math
import pathlib
import sys

import torch

import qflash_kernels as qk
from qflash_eval.workloads import SWIN_WORKLOADS, WORKLOADS, shape_at_batch

from .timing import SDPA_BACKENDS, graph_median_ms, median_ms, sdpa_fn, swin_bias_mask

DEFAULT_PEER = pathlib.Path(__file__).resolve().parents[2] / "shared" / "peers" / "qflash_official"


def sqnr(out, ref) -> float:
    return 20 * math.log10(ref.norm().item() / (out.double() - ref).norm().item())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--peer", default=str(DEFAULT_PEER))
    p.add_argument("--workloads", nargs="+", default=["A1", "A3", "A4", "A7"])
    p.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    args = p.parse_args(argv)
    if not (pathlib.Path(args.peer) / "qflash").is_dir():
        raise SystemExit(f"the paper's code is not at {args.peer}")
    sys.path.insert(0, args.peer)
    from qflash import qflash

    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| workload | batch | fastest SDPA ms (graph) | paper op ms (eager) | paper kernel ms | qflash_paper op ms "
          "(graph / eager) | qflash op ms (graph) | SQNR paper / qflash_paper / qflash dB | elements differing |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.workloads:
        for batch in args.batches:
            z, h, n, d = shape_at_batch(name, batch)
            q, k, v = [(torch.rand(z, h, n, d, device="cuda") * 8 - 4).half() for _ in range(3)]
            exact = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
            official = qflash.forward(q, k, v)
            ours = qk.qflash_paper_attention(q, k, v, granularity="batch")
            qflash_out = qk.qflash_attention(q, k, v, granularity="batch")
            sdpa = min(graph_median_ms(sdpa_fn(q, k, v, b)) for b in SDPA_BACKENDS)
            peer_op = median_ms(lambda: qflash.forward(q, k, v))
            peer_kernel = float(qflash.forward(q, k, v, return_mode="latency"))
            ours_graph = graph_median_ms(lambda: qk.qflash_paper_attention(q, k, v, granularity="batch"))
            ours_eager = median_ms(lambda: qk.qflash_paper_attention(q, k, v, granularity="batch"))
            qflash_graph = graph_median_ms(lambda: qk.qflash_attention(q, k, v, granularity="batch"))
            print(f"| {name} | {batch} | {sdpa:.4f} | {peer_op:.4f} | {peer_kernel:.4f} | {ours_graph:.4f} / "
                  f"{ours_eager:.4f} | {qflash_graph:.4f} | {sqnr(official, exact):.2f} / {sqnr(ours, exact):.2f} / "
                  f"{sqnr(qflash_out, exact):.2f} | {int((official != ours).sum())} of {official.numel()} |", flush=True)
            if name in SWIN_WORKLOADS and batch == args.batches[0]:
                bias, mask, attn_mask = swin_bias_mask(name, batch, h, n)
                group = WORKLOADS[name][0]
                exact_m = torch.nn.functional.scaled_dot_product_attention(
                    q.double(), k.double(), v.double(), attn_mask=attn_mask.double())
                official_m = qflash.forward(q, k, v, attn_mask=attn_mask)
                ours_m = qk.qflash_paper_attention(q, k, v, granularity="batch", bias=bias.half(), mask=mask.half(),
                                                   group=group)
                print(f"  {name} at {batch} with bias + mask: SQNR paper {sqnr(official_m, exact_m):.2f} dB, "
                      f"qflash_paper {sqnr(ours_m, exact_m):.2f} dB, differing {int((official_m != ours_m).sum())}")
    inf = torch.tensor([float("inf"), -float("inf")], device="cuda").half()
    print("float16 +inf, -inf to int32 on this GPU:", inf.to(torch.int32).tolist(),
          "and on the CPU:", inf.cpu().to(torch.int32).tolist())


if __name__ == "__main__":
    main()
