"""Same-process A/B of the qflash kernel and op against another copy of qflash_kernels (CUDA graph medians).

python -m benchmarks.ab --old qflash_kernels_old [--batches 64 256] [--rounds 3] [--single-tile-stages S]
`--old` names an importable package holding an earlier kernels/ folder (for example `git archive REV kernels`
unpacked as qflash_kernels_old on PYTHONPATH). Rounds alternate new and old so that drift hits both; the
table gives the median over rounds of each graph median, the ratio new / old, and fastest SDPA for scale.
Outputs of new and old are compared too (they must be identical). `--single-tile-stages` tries another
software-pipelining depth for the new kernel's rows of one key tile (N <= 64), with and without bias / mask.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics

import torch

import qflash_kernels as new
from qflash_eval.workloads import SWIN_WORKLOADS, WORKLOADS, shape_at_batch

from .timing import SDPA_BACKENDS, graph_median_ms, sdpa_fn, swin_bias_mask


def kernel_and_op(pkg, q, k, v, bias_mask):
    """(int8 kernel call, op call, op-with-bias-and-mask call or None) of package `pkg` on these inputs."""
    redesigned = importlib.util.find_spec(pkg.__name__ + ".jit") is not None
    scales = pkg.compute_scales(q, k, v)
    if redesigned:  # kernels/jit/ layout; the launcher in jit/qflash_launch.py from the typed-rooms change on
        launcher = pkg.__name__ + ".jit." + ("qflash_launch" if importlib.util.find_spec(
            pkg.__name__ + ".jit.qflash_launch") else "qflash")
        qflash_jit = importlib.import_module(launcher)
        quantize_jit = importlib.import_module(pkg.__name__ + ".jit.quantize")
        q8, k8, v8, v_rows = quantize_jit.quantize_qkv(q, k, v, scales)
        out = torch.empty_like(q).transpose(1, 2).contiguous().transpose(1, 2)

        def kernel():
            return qflash_jit.launch_qflash(q8, k8, v8, out, scales, v_operand_order=True, v_rows=v_rows)
    else:  # the layout before the redesign: qflash_triton / quantize_triton, v_rows as flag and count
        old_jit = importlib.import_module(pkg.__name__ + ".qflash_triton")
        old_quant = importlib.import_module(pkg.__name__ + ".quantize_triton")
        q8, k8, v8, v_rows = old_quant.quantize_qkv(q, k, v, scales)
        out = torch.empty_like(q).transpose(1, 2).contiguous().transpose(1, 2)

        def kernel():
            return old_jit.launch_qflash(q8, k8, v8, out, scales, v_rows=v_rows)

    def op():
        return pkg.qflash_attention(q, k, v)

    masked = None
    if bias_mask is not None:
        bias, mask, group = bias_mask

        def masked():
            return pkg.qflash_attention(q, k, v, bias=bias, mask=mask, group=group)
    return kernel, op, masked


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--old", required=True)
    p.add_argument("--workloads", nargs="+", default=["A1", "A3", "A4"])
    p.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--single-tile-stages", type=int, default=None)
    args = p.parse_args(argv)
    if args.single_tile_stages is not None:
        import triton

        from qflash_kernels.jit import qflash as qflash_jit

        config = triton.Config({"BLOCK_M": 64}, num_warps=4, num_stages=args.single_tile_stages)
        qflash_jit.FIXED_CONFIG = qflash_jit.FIXED_CONFIG_BIASED_TILE = config  # with and without bias / mask
    old = importlib.import_module(args.old)
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| workload | batch | variant | fastest SDPA ms | new ms | old ms | new / old | identical |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.workloads:
        for batch in args.batches:
            z, h, n, d = shape_at_batch(name, batch)
            q, k, v = [(torch.rand(z, h, n, d, device="cuda") * 8 - 4).half() for _ in range(3)]
            sdpa = min(graph_median_ms(sdpa_fn(q, k, v, b)) for b in SDPA_BACKENDS)
            bias_mask = None
            if name in SWIN_WORKLOADS:
                bias, mask, _ = swin_bias_mask(name, batch, h, n)
                bias_mask = (bias, mask, WORKLOADS[name][0])
            fns = {"new": kernel_and_op(new, q, k, v, bias_mask), "old": kernel_and_op(old, q, k, v, bias_mask)}
            for i, variant in enumerate(("kernel_int8", "op", "op_bias_mask")):
                if fns["new"][i] is None:
                    continue
                same = torch.equal(fns["new"][i](), fns["old"][i]())
                times = {"new": [], "old": []}
                for _ in range(args.rounds):
                    for which in ("new", "old"):
                        times[which].append(graph_median_ms(fns[which][i]))
                a, b = statistics.median(times["new"]), statistics.median(times["old"])
                print(f"| {name} | {batch} | {variant} | {sdpa:.4f} | {a:.4f} | {b:.4f} | {a / b:.3f} | {same} |",
                      flush=True)
            del q, k, v
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
