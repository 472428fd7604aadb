"""GPU benchmark: QFlash against PyTorch SDPA on the paper's workloads, and whole models in each mode.

python -m benchmarks.bench --out results/bench [--batches 1 8 64 256] [--models deit_tiny,vit_base]
Medians of triton.testing.do_bench (eager: the host launches every call) and of CUDA-graph replay (GPU
time alone), ratios against SDPA measured in the same process the same way, achieved bandwidth against
a measured device copy, SQNR against float64 attention, NVML energy per call and per image. Peers in the
same table when present: SageAttention (`pip install sageattention`) and the paper's own code
(../shared/peers/qflash_official: its op, with a host sync, eager only; its kernel alone).
Writes bench.json, bench.md and bench.png.
"""
from __future__ import annotations

import argparse
import json
import pathlib
from typing import Callable, Optional

import torch

import qflash_kernels as qk
from qflash_kernels import compute_scales
from qflash_kernels.jit.qflash_launch import launch_qflash
from qflash_kernels.jit.quantize import quantize_qkv

from qflash_eval.provenance import provenance
from qflash_eval.report import markdown_table
from qflash_eval.workloads import SWIN_WORKLOADS, WORKLOADS, shape_at_batch

from .energy import EnergyMeter
from .peers import paper_kernel, paper_module, sage
from .timing import (
    SDPA_BACKENDS, copy_bandwidth_gbs, cuda_graph_replay, graph_median_ms, median_ms, peak_mib, sdpa_fn, sqnr_db,
    swin_bias_mask,
)

def bench_workload(name: str, batch: int, meter: Optional[EnergyMeter] = None, peers: bool = True) -> list[dict]:
    """Every variant of one workload at one batch: eager and graph medians, SQNR against float64 attention,
    and with `meter` the energy per call of its graph replay."""
    z, h, n, d = shape_at_batch(name, batch)
    elements = z * h * n * d
    q, k, v = [(torch.rand(z, h, n, d, device="cuda") * 8 - 4).half() for _ in range(3)]
    exact = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
    variants: dict[str, tuple[Callable, int]] = {}
    fp16_bytes = 4 * elements * 2  # read Q, K, V, write O, fp16
    for backend in SDPA_BACKENDS:
        variants[f"sdpa_{backend}"] = (sdpa_fn(q, k, v, backend), fp16_bytes)
    scales = compute_scales(q, k, v)
    # int8 inputs in the layout the op hands the kernel: Q, K (Z, H, N, D), V transposed with padded keys
    q8, k8, v8, v_rows = quantize_qkv(q, k, v, scales)
    ints = (q8, k8, v8)
    out = torch.empty(z, n, h, d, dtype=q.dtype, device="cuda").transpose(1, 2)  # as the op and flash SDPA
    variants["qflash_kernel_int8"] = (lambda: launch_qflash(*ints, out, scales, v_operand_order=True, v_rows=v_rows),
                                      3 * elements + 2 * elements)
    variants["qflash_op"] = (lambda: qk.qflash_attention(q, k, v), fp16_bytes)
    variants.update(_hopper_variants(q, k, v, scales, out, elements, fp16_bytes))
    variants["qflash_paper_op"] = (lambda: qk.qflash_paper_attention(q, k, v, granularity="batch"), fp16_bytes)
    variants["ivit_op"] = (lambda: qk.ivit_attention(q, k, v), fp16_bytes)
    scale_tensors = tuple(torch.full((z,), 0.03, device="cuda") for _ in range(3))  # the public int8 entry
    scale_floats = (0.03, 0.03, 0.03)
    plain = [torch.randint(-127, 128, (z, h, n, d), dtype=torch.int8, device="cuda") for _ in range(3)]
    int8_bytes = 3 * elements + 2 * elements
    variants["qflash_int8_entry_floats"] = (lambda: qk.qflash_attention_int8(*plain, scale_floats), int8_bytes)
    variants["qflash_int8_entry_tensors"] = (lambda: qk.qflash_attention_int8(*plain, scale_tensors), int8_bytes)
    # the peers' specifications in torch on CUDA (no package to install for these two)
    variants["intflash_op"] = (lambda: qk.peers.intflash_attention(q, k, v), fp16_bytes)
    variants["fp8_op"] = (lambda: qk.peers.fp8_attention(q, k, v), fp16_bytes)
    eager_only = set()
    if peers:
        fn, reason = sage(q, k, v)
        if fn is not None:
            variants["sage_op"] = (fn, fp16_bytes)
        paper = paper_module()
        if paper is not None:
            variants["paper_op"] = (lambda: paper.forward(q, k, v), fp16_bytes)  # a host sync: eager only
            eager_only.add("paper_op")
            variants["paper_kernel_int8"] = (paper_kernel(paper, q, k, v), 3 * elements + elements)
    if name in SWIN_WORKLOADS:
        bias, mask, attn_mask = swin_bias_mask(name, batch, h, n)
        group = WORKLOADS[name][0]
        variants["sdpa_attn_mask"] = (sdpa_fn(q, k, v, None, attn_mask), fp16_bytes + attn_mask.numel() * 2)
        variants["qflash_op_bias_mask"] = (
            lambda: qk.qflash_attention(q, k, v, bias=bias, mask=mask, group=group), fp16_bytes)
    rows = []
    for variant, (fn, min_bytes) in variants.items():
        try:
            result = fn()
            ms = median_ms(fn)
            mem = peak_mib(fn)
        except RuntimeError as err:  # an SDPA backend that does not take this shape
            rows.append({"workload": name, "batch": batch, "variant": variant, "error": str(err)[:120]})
            continue
        row = {"workload": name, "batch": batch, "variant": variant, "ms": ms, "peak_mib": round(mem, 1),
               "min_bytes": min_bytes, "gbs": min_bytes / ms / 1e6}
        if variant.endswith("_int8") or "_int8_" in variant:
            row["sqnr_db"] = None  # int8 in, no float reference of the same inputs
        elif variant not in ("sdpa_attn_mask", "qflash_op_bias_mask"):
            row["sqnr_db"] = round(sqnr_db(result, exact), 2)
        if variant not in eager_only:
            row["graph_ms"] = graph_median_ms(fn)
            row["eager_vs_graph"] = ms / row["graph_ms"]
            if meter is not None and meter.available:
                row["energy_mj"] = meter.per_call_mj(cuda_graph_replay(fn))
        rows.append(row)
    for timing, ratio in (("ms", "ratio_vs_sdpa"), ("graph_ms", "graph_ratio_vs_sdpa"),
                          ("energy_mj", "energy_vs_sdpa")):
        unmasked = [r for r in rows if r["variant"].startswith("sdpa_") and r["variant"] != "sdpa_attn_mask"
                    and r.get(timing)]
        fastest = min(unmasked, key=lambda r: r["graph_ms" if timing == "energy_mj" else timing], default=None)
        masked = next((r[timing] for r in rows if r["variant"] == "sdpa_attn_mask" and r.get(timing)), None)
        for r in rows:
            if r.get(timing) and fastest:
                base = masked if r["variant"] == "qflash_op_bias_mask" and masked else fastest[timing]
                r[ratio] = r[timing] / base
    del q, k, v, ints, out, exact, plain
    torch.cuda.empty_cache()
    return rows


def compile_counts() -> dict:
    """Compiled kernel variants for fresh (N, D): first over batches 1 and 256, then how many more batch
    sizes 3, 7, 64, 100, 512 add (0 means no per-batch compiles), and how many launch configs (N, D) may
    choose from (1: the fixed config, no autotuning)."""
    from qflash_kernels.constants import INT32_ACC_MAX_N
    from qflash_kernels.jit.qflash import qflash_fwd_kernel, uses_fixed_config

    jit = qflash_fwd_kernel.fn

    def compiled() -> int:
        return sum(len(cache[0]) for cache in jit.device_caches.values())

    def call(batch, n, d, h):
        qkv = torch.randn(batch, n, 3, h, d, device="cuda", dtype=torch.float16).permute(2, 0, 3, 1, 4)
        qk.qflash_attention(qkv[0], qkv[1], qkv[2])

    counts = {}
    for n, d, h in ((196, 64, 12), (50, 32, 3)):
        before = compiled()
        for batch in (1, 256):
            call(batch, n, d, h)
        first = compiled()
        for batch in (3, 7, 64, 100, 512):
            call(batch, n, d, h)
        counts[f"N={n},D={d}"] = {"compiled_for_batch_1_and_256": first - before,
                                  "added_by_batches_3_7_64_100_512": compiled() - first,
                                  "launch_configs": 1 if uses_fixed_config(d, n > INT32_ACC_MAX_N)
                                  else len(qflash_fwd_kernel.configs)}
    return counts


def bench_models(models: list[str], batch: int, meter: Optional[EnergyMeter] = None,
                 modes: Optional[list[str]] = None) -> list[dict]:
    """Images/s of each model in each mode (all but fp32 unless `modes` names some; fp16 always, first): eager
    (host launches every kernel) and CUDA-graph replay, and with `meter` the energy per image of the replay."""
    import timm

    from qflash_eval.attention_swap import mode_copy
    from qflash_eval.config import resolve_model_name
    from qflash_eval.modes import ALL_MODES, PEER_MODES, AttentionConfig

    rows = []
    x = torch.randn(batch, 3, 224, 224, device="cuda").half()
    for alias in models:
        base = timm.create_model(resolve_model_name(alias)[0], pretrained=False).eval()
        fp16_ms, fp16_energy = {}, None
        chosen = [m for m in ALL_MODES + PEER_MODES if m != "fp32" and (modes is None or m in modes or m == "fp16")]
        for mode in chosen:  # fp16 first: the others are relative to it
            model = mode_copy(base, AttentionConfig(mode), torch.float16, "cuda")[0]
            energy = None
            with torch.inference_mode():
                timings = {"eager": median_ms(lambda: model(x), warmup=5, rep=30)}
                try:
                    replay = cuda_graph_replay(lambda: model(x))
                    timings["cuda_graph"] = median_ms(replay, warmup=5, rep=30)
                    if meter is not None and meter.available:
                        energy = meter.per_call_mj(replay) / batch
                except RuntimeError as err:  # a mode that syncs with the host cannot be captured
                    print(f"{alias} {mode}: no CUDA graph ({str(err)[:100]})", flush=True)
            for launch, ms in timings.items():
                if mode == "fp16":
                    fp16_ms[launch] = ms
                    fp16_energy = energy
                row = {"model": alias, "mode": mode, "launch": launch, "batch": batch, "ms": ms,
                       "images_per_s": batch / ms * 1e3, "vs_fp16": fp16_ms.get(launch, float("nan")) / ms}
                if launch == "cuda_graph" and energy is not None:
                    row["energy_mj_per_image"] = energy
                    row["energy_vs_fp16"] = energy / fp16_energy if fp16_energy else None
                rows.append(row)
            del model
            torch.cuda.empty_cache()
    return rows


def _fmt(r: dict, key: str, spec: str) -> str:
    return format(r[key], spec) if r.get(key) is not None else "-"


def kernel_table(rows: list[dict]) -> str:
    header = ["workload", "batch", "variant", "median ms", "x fastest SDPA", "graph ms", "graph x fastest SDPA",
              "eager x graph", "SQNR dB", "mJ / call", "energy x SDPA", "GB/s (min bytes)", "peak MiB"]
    body = []
    for r in rows:
        if "ms" not in r:
            body.append([r["workload"], str(r["batch"]), r["variant"], "n/a"] + ["-"] * 9)
            continue
        body.append([r["workload"], str(r["batch"]), r["variant"], _fmt(r, "ms", ".4f"), _fmt(r, "ratio_vs_sdpa", ".2f"),
                     _fmt(r, "graph_ms", ".4f"), _fmt(r, "graph_ratio_vs_sdpa", ".2f"), _fmt(r, "eager_vs_graph", ".2f"),
                     _fmt(r, "sqnr_db", ".2f"),
                     _fmt(r, "energy_mj", ".1f"), _fmt(r, "energy_vs_sdpa", ".2f"), f"{r['gbs']:.0f}",
                     f"{r['peak_mib']:.0f}"])
    return markdown_table(header, body)


def model_table(rows: list[dict]) -> str:
    header = ["model", "mode", "launch", "batch", "median ms", "images/s", "x fp16 images/s (same launch)",
              "mJ / image", "energy x fp16"]
    body = [[r["model"], r["mode"], r["launch"], str(r["batch"]), f"{r['ms']:.2f}", f"{r['images_per_s']:.0f}",
             f"{r['vs_fp16']:.2f}", _fmt(r, "energy_mj_per_image", ".2f"), _fmt(r, "energy_vs_fp16", ".2f")]
            for r in rows]
    return markdown_table(header, body)


def chart(rows: list[dict], path: pathlib.Path) -> None:
    """Per batch: time and (where measured) energy per call, as multiples of the fastest SDPA backend's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in rows})
    metrics = [("graph_ratio_vs_sdpa", "time")] + (
        [("energy_vs_sdpa", "energy")] if any(r.get("energy_vs_sdpa") for r in rows) else [])
    variants = ["qflash_kernel_int8", "qflash_op", "ivit_op", "sage_op", "paper_kernel_int8"]
    fig, axes = plt.subplots(len(metrics), len(batches), figsize=(4.5 * len(batches), 4 * len(metrics)),
                             sharey="row", squeeze=False)
    for row_axes, (key, label) in zip(axes, metrics):
        for ax, b in zip(row_axes, batches):
            names = sorted({r["workload"] for r in rows if r["batch"] == b})
            for i, var in enumerate(variants):
                vals = [next((r.get(key) or float("nan") for r in rows
                              if r["batch"] == b and r["workload"] == w and r["variant"] == var), float("nan"))
                        for w in names]
                ax.bar([j + 0.16 * i for j in range(len(names))], vals, width=0.16, label=var)
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_xticks([j + 0.32 for j in range(len(names))], names)
            ax.set_yscale("log")
            ax.set_title(f"batch {b}: {label} / fastest SDPA (lower is better)", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _hopper_variants(q, k, v, scales, out, elements, fp16_bytes) -> dict:
    """The Gluon sm90 kernel (kernels/gluon) on its int8 layout, and the op forced onto it, where it applies."""
    from qflash_kernels import gluon
    from qflash_kernels.jit.qflash_launch import qflash_triton

    if not gluon.sm90_kernel_applies(q, k, v, None, None):
        return {}
    q8, k8, v8, _ = quantize_qkv(q, k, v, scales, quantize_q=True)
    vt8 = v8.transpose(2, 3)
    return {"sm90_kernel_int8": (lambda: gluon.launch_qflash_sm90(q8, k8, vt8, out, scales), 5 * elements),
            "sm90_op": (lambda: qflash_triton(q, k, v, hopper=True), fp16_bytes)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="results/bench")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    p.add_argument("--workloads", nargs="*", default=list(WORKLOADS), help="none: the models alone")
    p.add_argument("--models", default="deit_tiny,deit_small,vit_base,swin_tiny")
    p.add_argument("--model-batch", type=int, default=256)
    p.add_argument("--model-modes", default=None, help="comma list of the modes the models run (default: all)")
    p.add_argument("--energy-batches", type=int, nargs="*", default=[256],
                   help="batches at which every graph-replayable variant's energy is measured (>= 1 s each)")
    p.add_argument("--no-peers", action="store_true", help="leave out SageAttention and the paper's code")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("the benchmark needs a CUDA GPU")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meter = EnergyMeter(torch.cuda.current_device())
    if not meter.available:
        print(f"energy not measured: {meter.reason}", flush=True)
    copy_gbs = copy_bandwidth_gbs()
    rows = []
    for name in args.workloads:
        for b in args.batches:
            rows += bench_workload(name, b, meter if b in args.energy_batches else None, peers=not args.no_peers)
            print(kernel_table([r for r in rows if r["workload"] == name and r["batch"] == b]).split("\n", 2)[2],
                  flush=True)
    compiles = compile_counts() if rows else None  # (with no workloads: the models alone)
    print("compiled kernel variants:", compiles, flush=True)
    models = bench_models([m for m in args.models.split(",") if m], args.model_batch, meter,
                          args.model_modes.split(",") if args.model_modes else None) if args.models else []
    result = {"provenance": provenance(torch.cuda.get_device_name(), 1), "copy_gbs": copy_gbs, "compiles": compiles,
              "energy": "NVML total energy over >= 1 s of graph replays" if meter.available else meter.reason,
              "kernels": rows, "models": models}
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    text = (f"Device: {result['provenance']['device']}; measured copy bandwidth {copy_gbs:.0f} GB/s; "
            f"compiled variants: {compiles}; energy: {result['energy']}.\n\n"
            + kernel_table(rows) + "\n\n" + model_table(models) + "\n")
    (out / "bench.md").write_text(text)
    if rows:
        chart(rows, out / "bench.png")
    print(text)


if __name__ == "__main__":
    main()
