"""Same-process timing of the qflash kernel structures for N <= 256 (CUDA-graph medians, H200-sized batches).

python -m benchmarks.resident_ab [--old qflash_kernels_head] [--workloads A1 A3 A4 A7] [--batches 64 256]
Rows: fastest SDPA, SageAttention when installed, `--old` (another copy of qflash_kernels: the 64-key online
softmax), the tiled kernel with one whole-row key tile, and the head-resident kernel at several launch
shapes (query rows, blocks per program, warps, stages). Ops take timm's strided Q/K/V views; `int8` rows
take int8 Q/K/V already quantized. Outputs of every new variant are compared with the tiled op's.
"""
from __future__ import annotations

import argparse
import importlib
import statistics

import torch

import qflash_kernels as new
from qflash_eval.workloads import shape_at_batch

from .bench import SDPA_BACKENDS, graph_median_ms, sdpa_fn
from .peers import sage

RESIDENT_LAUNCHES = [(64, 4, 4, 1), (32, 8, 4, 1)]


def timm_views(batch_z: int, h: int, n: int, d: int):
    """q, k, v as timm's attention makes them: strided (Z, H, N, D) views of one (Z, N, 3 H D) qkv tensor."""
    qkv = (torch.rand(batch_z, n, 3 * h * d, device="cuda") * 8 - 4).half()
    return qkv.reshape(batch_z, n, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)


def variants(old, q, k, v) -> dict:
    from qflash_kernels.api import _empty_output
    from qflash_kernels.jit.qflash import launch_qflash, launch_qflash_resident
    from qflash_kernels.jit.quantize import quantize_qkv
    from qflash_kernels.scales import quantize_int8

    fns = {}
    sdpa = {b: sdpa_fn(q, k, v, b) for b in SDPA_BACKENDS}
    fns.update({f"sdpa_{b}": f for b, f in sdpa.items()})
    peer, _ = sage(q.contiguous(), k.contiguous(), v.contiguous())
    if peer is not None:
        fns["sage"] = peer
    scales = new.compute_scales(q, k, v)
    out = _empty_output(q.shape, q.dtype, q.device)
    if old is not None:
        old_quantize = importlib.import_module(old.__name__ + ".jit.quantize")
        old_qflash = importlib.import_module(old.__name__ + ".jit.qflash")
        oq8, ok8, ov8, o_rows = old_quantize.quantize_qkv(q, k, v, scales)
        fns["old_op"] = lambda: old.qflash_attention(q, k, v)
        fns["old_kernel_int8"] = lambda: old_qflash.launch_qflash(oq8, ok8, ov8, out, scales, v_operand_order=True,
                                                                   v_rows=o_rows)
    q8, k8, v8, v_rows = quantize_qkv(q, k, v, scales)
    fns["tiled_op"] = lambda: new.qflash_attention(q, k, v)
    fns["tiled_kernel_int8"] = lambda: launch_qflash(q8, k8, v8, out, scales, v_operand_order=True, v_rows=v_rows)
    fns["whole_row_tile_kernel_int8"] = lambda: launch_qflash(q8, k8, v8, out, scales, v_operand_order=True,
                                                              v_rows=v_rows, whole_row_tile=True)
    natural = [quantize_int8(t, inv).to(torch.int8) for t, inv in ((q, scales.inv_q), (k, scales.inv_k),
                                                                    (v, scales.inv_v))]
    for launch in RESIDENT_LAUNCHES:
        name = "x".join(map(str, launch))

        def op(launch=launch):
            s = new.compute_scales(q, k, v)
            return launch_qflash_resident(q, k, v, _empty_output(q.shape, q.dtype, q.device), s,
                                          scales_from_inputs=True, launch=launch)

        fns[f"resident_op_{name}"] = op
        fns[f"resident_kernel_int8_{name}"] = (
            lambda launch=launch: launch_qflash_resident(*natural, out, scales, launch=launch))
    return fns


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--old", default=None)
    p.add_argument("--workloads", nargs="+", default=["A1", "A3", "A4", "A7"])
    p.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    old = importlib.import_module(args.old) if args.old else None
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| workload | batch | variant | ms | / fastest SDPA | same bits as tiled_op |")
    print("|---|---|---|---|---|---|")
    for name in args.workloads:
        for batch in args.batches:
            z, h, n, d = shape_at_batch(name, batch)
            q, k, v = timm_views(z, h, n, d)
            fns = variants(old, q, k, v)
            reference = fns["tiled_op"]()
            times = {key: [] for key in fns}
            for _ in range(args.rounds):
                for key, fn in fns.items():
                    times[key].append(graph_median_ms(fn))
            med = {key: statistics.median(t) for key, t in times.items()}
            fastest = min(med[f"sdpa_{b}"] for b in SDPA_BACKENDS)
            for key, ms in med.items():
                same = ""
                if key.startswith("resident_op") or key == "old_op":
                    same = str(torch.equal(fns[key](), reference))
                print(f"| {name} | {batch} | {key} | {ms:.4f} | {ms / fastest:.3f} | {same} |", flush=True)
            del q, k, v, fns
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
