"""The qflash op beyond its kernel: the per-image amax + int8 K/V pass against its memory floor (GPU).

python -m benchmarks.prepass [--workloads A1 A2 A3] [--batch 256] [--old PKG] [--out DIR]

Q/K/V are timm's views of one (Z, N, 3, H, D) float16 qkv buffer, as the op receives them. For each workload
it prints CUDA-graph medians (same process) of: the fastest SDPA (for scale), the whole op, the int8 kernel
alone, the op with K/V quantized as the kernel loads them (no int8 pass), the op with static (calibrated)
scales, the scales alone, the amax of Q/K/V alone (one read: the read floor as this GPU reaches it), and the
one-pass amax + int8 kernel (also that of --old, which must give the same bits). The floor: bytes the pass
must move (Q, K, V read once, int8 K and V written) over the device's copy bandwidth measured in the same
process.
"""
from __future__ import annotations

import argparse
import importlib
import json
import pathlib

import torch

from qflash_eval.workloads import shape_at_batch

from .timing import SDPA_BACKENDS, copy_bandwidth_gbs, graph_median_ms, sdpa_fn


ON_LOAD = "qflash op, K/V quantized on load (no int8 pass)"
STATIC = "qflash op, static scales (no amax: one int8 pass)"


def timm_qkv(z: int, h: int, n: int, d: int):
    qkv = torch.randn(z, n, 3, h, d, device="cuda", dtype=torch.float16) * 2
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)


def pass_variants(q, k, v, old_pkg=None) -> dict:
    from qflash_kernels.jit.quantize import scales_and_int8_qkv

    variants = {"one pass (amax + int8 K/V)": lambda: scales_and_int8_qkv(q, k, v, quantize_q=False)}
    if old_pkg is not None:
        old = importlib.import_module(old_pkg + ".jit.quantize")
        variants[f"one pass, {old_pkg}"] = lambda: old.scales_and_int8_qkv(q, k, v, quantize_q=False)
    return variants


def op_quantizing_on_load(q, k, v, out):
    """The op with no int8 pass, as qflash_launch runs it up to PREQUANTIZE_ABOVE_N keys: the scales (amax +
    constants), then the kernel quantizes K and V tiles as it loads them (every query block again)."""
    import qflash_kernels as qk
    from qflash_kernels.jit.qflash_launch import launch_qflash

    return lambda: launch_qflash(q, k, v, out, qk.compute_scales(q, k, v), scales_from_inputs=True)


def same_bits(a, b) -> bool:
    (sa, ia), (sb, ib) = a, b
    return all(torch.equal(x, y) for x, y in [(sa.table, sb.table), *zip(ia[1:3], ib[1:3])])  # int32 / int8


def bench(name: str, batch: int, old_pkg, bandwidth: float) -> list[dict]:
    import qflash_kernels as qk
    from qflash_kernels.jit.amax import amax_per_z
    from qflash_kernels.jit.qflash_launch import empty_output, launch_qflash
    from qflash_kernels.jit.quantize import scales_and_int8_qkv

    z, h, n, d = shape_at_batch(name, batch)
    q, k, v = timm_qkv(z, h, n, d)
    scales, (q_f, k8, v8, v_rows) = scales_and_int8_qkv(q, k, v, quantize_q=False)
    out = empty_output(q.shape, q.dtype, q.device)
    on_load = op_quantizing_on_load(q, k, v, empty_output(q.shape, q.dtype, q.device))
    elements = z * h * n * d
    static = tuple(float(t.abs().amax()) / 127 for t in (q, k, v))  # calibrated scales, as --granularity static
    floor_bytes = 3 * elements * 2 + 2 * elements  # Q, K, V read once (float16); int8 K and V written
    rows = [{"workload": name, "batch": batch, "what": "fastest SDPA",
             "ms": min(graph_median_ms(sdpa_fn(q, k, v, b)) for b in SDPA_BACKENDS)},
            {"workload": name, "batch": batch, "what": "qflash op", "ms": graph_median_ms(
                lambda: qk.qflash_attention(q, k, v))},
            {"workload": name, "batch": batch, "what": "int8 kernel", "ms": graph_median_ms(
                lambda: launch_qflash(q_f, k8, v8, out, scales, v_operand_order=True, v_rows=v_rows,
                                      scales_from_inputs=True))},
            {"workload": name, "batch": batch, "what": ON_LOAD, "ms": graph_median_ms(on_load)},
            {"workload": name, "batch": batch, "what": STATIC, "ms": graph_median_ms(
                lambda: qk.qflash_attention(q, k, v, granularity="static", static_scales=static))},
            {"workload": name, "batch": batch, "what": "scales alone (amax + constants)",
             "ms": graph_median_ms(lambda: qk.compute_scales(q, k, v))},
            {"workload": name, "batch": batch, "what": "amax of Q, K, V (one read)",
             "ms": graph_median_ms(lambda: amax_per_z(q, k, v))},
            {"workload": name, "batch": batch, "what": "memory floor of the pass", "ms": floor_bytes / bandwidth / 1e6}]
    next(r for r in rows if r["what"] == ON_LOAD)["identical"] = torch.equal(qk.qflash_attention(q, k, v), on_load())
    for row in rows:
        print(f"| {name} | {batch} | {row['what']} | {row['ms']:.4f} | {row.get('identical', '')} |", flush=True)
    variants = pass_variants(q, k, v, old_pkg)
    first = None
    for what, fn in variants.items():
        result = fn()
        first = first or result
        ms = graph_median_ms(fn)
        row = {"workload": name, "batch": batch, "what": what, "ms": ms, "identical": same_bits(result, first)}
        rows.append(row)
        print(f"| {name} | {batch} | {what} | {ms:.4f} | {row['identical']} |", flush=True)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workloads", nargs="+", default=["A1", "A2", "A3"])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--old", default=None, help="an importable earlier kernels package to time beside")
    p.add_argument("--out", default=None, help="folder for prepass.json")
    args = p.parse_args(argv)
    bandwidth = copy_bandwidth_gbs()
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, copy bandwidth {bandwidth:.0f} GB/s")
    print("| workload | batch | what | graph median ms | same bits as the op / the first pass |\n|---|---|---|---|---|")
    rows = [row for name in args.workloads for row in bench(name, args.batch, args.old, bandwidth)]
    if args.out:
        folder = pathlib.Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "prepass.json").write_text(json.dumps({"copy_bandwidth_gbs": bandwidth, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
