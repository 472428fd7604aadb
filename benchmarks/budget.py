"""Instruction budget of the attention kernels: warp instructions per 32 useful score elements.

python -m benchmarks.budget [--workloads A1 A3 A4] [--batch 256] [--old PKG] [--out DIR]   (GPU, with ncu)
python -m benchmarks.budget --sass-only [--workloads ...]                                   (CPU or GPU)

Useful score elements are Z x H x N x N_k (a query row against a key). For each kernel at each workload
(qflash: its one or two launches; qflash_paper and ivit: every launch of their ops, summed),
Nsight Compute counts the warp instructions executed, split by pipe (integer ALU, FMA / IMAD, uniform,
load-store, tensor, conversions on XU), with registers, achieved occupancy and issue-slot use; the kernel's
SASS gives the instructions of its key-tile loop by kind. The share of computed score elements that are
padding follows from the launch shape (qflash: 64-row blocks, a 16/32-row tail, 64-key tiles and a half
last tile; the paper's kernel: 32 x 32 tiles). `--old PKG` profiles an earlier kernels/ folder, importable
as PKG, beside the current one. cuDNN's fp16 kernel (the fastest SDPA backend that takes the shape) is
profiled the same way. Writes budget.json and budget.md under --out.

The SASS part (benchmarks/sass_loop.py) compiles for sm90 without a GPU too (`--sass-only`): the launcher
runs with its kernel launch intercepted, and the captured arguments are compiled with Triton's own
specialization rules.
"""
from __future__ import annotations

import argparse
import collections
import csv
import io
import json
import os
import pathlib
import re
import subprocess
import sys

from .sass_loop import compiled_sass, launcher

PIPES = ("alu", "fma", "fmaheavy", "fmalite", "fp16", "fp64", "lsu", "uniform", "xu", "adu", "cbu",
         "tensor", "tensor_op_imma", "tensor_op_gmma", "tensor_op_hmma")
BASE_METRICS = ("smsp__inst_executed.sum", "smsp__inst_issued.sum", "launch__registers_per_thread",
                "sm__warps_active.avg.pct_of_peak_sustained_active",
                "smsp__issue_active.avg.pct_of_peak_sustained_active", "gpu__time_duration.sum",
                "launch__grid_size", "launch__block_size")


# ---------------------------------------------------------------- padding of each kernel's launch shape
def computed_scores(kernel: str, n: int, n_k: int, pkg=None) -> int | None:
    """Score elements one head computes (rows x keys over all its programs), or None where not modelled."""
    cdiv = lambda a, b: -(-a // b)  # noqa: E731
    if kernel == "qflash":
        launch = launcher(pkg)
        tail = launch.tail_rows(n)
        rows = (n // 64) * 64 + tail if tail else cdiv(n, 64) * 64
        half = getattr(launch, "half_last_tile", lambda _n: False)(n_k)
        keys = (n_k // 64) * 64 + 32 if half else cdiv(n_k, 64) * 64
        return rows * keys
    if kernel == "qflash_paper":
        return cdiv(n, 32) * 32 * cdiv(n_k, 32) * 32
    return None


# ---------------------------------------------------------------- the variants (one call each)
def variants(name: str, batch: int, old: str | None):
    """{label: (kernel family, call)} on fresh random inputs of workload `name` (CUDA)."""
    import importlib

    import torch

    import qflash_kernels as qk
    from qflash_eval.workloads import shape_at_batch

    from .timing import sdpa_fn

    z, h, n, d = shape_at_batch(name, batch)
    q, k, v = [(torch.rand(z, h, n, d, device="cuda") * 8 - 4).half() for _ in range(3)]
    calls = {}
    for label, pkg in (("qflash", "qflash_kernels"), ("qflash_old", old)):
        if pkg is None:
            continue
        mod = importlib.import_module(pkg)
        launch = launcher(pkg)
        quant = importlib.import_module(pkg + ".jit.quantize")
        scales = mod.compute_scales(q, k, v)
        q8, k8, v8, v_rows = quant.quantize_qkv(q, k, v, scales)
        out = torch.empty(z, n, h, d, dtype=q.dtype, device="cuda").transpose(1, 2)
        calls[label] = ("qflash", pkg, lambda a=(q8, k8, v8, out, scales), r=v_rows, f=launch.launch_qflash:
                        f(*a, v_operand_order=True, v_rows=r))
    # the ops, every launch of each summed: qflash_paper's K/V pass, constants and kernel; ivit's two kernels
    calls["qflash_paper_op"] = ("qflash_paper", None, lambda: qk.qflash_paper_attention(q, k, v, granularity="batch"))
    calls["ivit_op"] = ("ivit", None, lambda: qk.ivit_attention(q, k, v))
    for backend in ("cudnn", "flash", "efficient"):
        fn = sdpa_fn(q, k, v, backend)
        try:
            fn()
        except RuntimeError:
            continue
        calls[f"sdpa_{backend}"] = ("sdpa", None, fn)
    return calls, (z, h, n, n)


# ---------------------------------------------------------------- child: run each variant once under ncu
def child(name: str, batch: int, old: str | None, only: str) -> None:
    import torch
    import triton
    import triton.language as tl

    @triton.jit
    def budget_marker(x):
        tl.store(x, 1)

    calls, _ = variants(name, batch, old)
    marker = torch.zeros(1, device="cuda")
    for _, _, fn in calls.values():  # compile and warm up outside the profiled range
        fn()
    budget_marker[(1,)](marker)
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    for label, (_, _, fn) in calls.items():
        if only and label != only:
            continue
        budget_marker[(1,)](marker)
        fn()
    budget_marker[(1,)](marker)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    print("BUDGET_ORDER " + json.dumps([lb for lb in calls if not only or lb == only]), flush=True)


def available_metrics() -> list[str]:
    out = subprocess.run(["ncu", "--query-metrics", "--chip", "gh100"], capture_output=True, text=True).stdout
    names = set(re.findall(r"^(\S+)\s", out, re.M))
    wanted = [m for m in BASE_METRICS if m.split(".")[0] in names]
    wanted += [f"smsp__inst_executed_pipe_{p}.sum" for p in PIPES if f"smsp__inst_executed_pipe_{p}" in names]
    return wanted


def profile(name: str, batch: int, old: str | None) -> tuple[dict, list]:
    """ncu over one child run of workload `name`: {label: summed metrics over its kernels}, kernel names."""
    metrics = available_metrics()
    cmd = ["ncu", "--profile-from-start", "off", "--csv", "--page", "raw", "--metrics", ",".join(metrics),
           sys.executable, "-m", "benchmarks.budget", "--child", name, "--batch", str(batch)]
    if old:
        cmd += ["--old", old]
    run = subprocess.run(cmd, capture_output=True, text=True)
    order_line = [ln for ln in run.stdout.splitlines() if ln.startswith("BUDGET_ORDER ")]
    if run.returncode or not order_line:
        raise RuntimeError(f"ncu run of {name} failed ({run.returncode}): {run.stderr[-2000:]}{run.stdout[-2000:]}")
    order = json.loads(order_line[0][len("BUDGET_ORDER "):])
    table = run.stdout[run.stdout.index('"ID"'):] if '"ID"' in run.stdout else ""
    rows = [r for r in csv.DictReader(io.StringIO(table)) if r.get("ID", "").isdigit()]
    groups, current = [], None
    for r in rows:  # kernels between markers belong to one variant, in the child's order
        if "budget_marker" in r["Kernel Name"]:
            if current is not None:
                groups.append(current)
            current = []
        elif current is not None:
            current.append(r)
    result = {}
    for label, kernels in zip(order, groups):
        summed = collections.Counter()
        for r in kernels:
            for m in metrics:
                value = _number(r.get(m))
                if value is None:
                    continue
                if m.startswith(("launch__registers", "sm__warps_active", "smsp__issue_active")):
                    summed[m] = max(summed[m], value)  # per-launch figures: the largest
                else:
                    summed[m] += value
        result[label] = {"metrics": dict(summed), "kernels": [r["Kernel Name"][:80] for r in kernels]}
    return result, metrics


def _number(text):
    try:
        return float(str(text).replace(",", ""))
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- report
def budget_rows(name: str, batch: int, old: str | None, counters: dict, sass: dict) -> list[dict]:
    from qflash_eval.workloads import shape_at_batch

    z, h, n, d = shape_at_batch(name, batch)
    useful = z * h * n * n
    rows = []
    for label, entry in counters.items():
        m = entry["metrics"]
        executed = m.get("smsp__inst_executed.sum")
        family = {"qflash": "qflash", "qflash_old": "qflash", "qflash_paper_op": "qflash_paper"}.get(label)
        computed = computed_scores(family, n, n, old if label == "qflash_old" else None) if family else None
        per32 = lambda x: round(x / (useful / 32), 2) if x is not None else None  # noqa: E731
        row = {"workload": name, "batch": batch, "kernel": label, "per_32_useful": per32(executed),
               "padding_pct": round(100 * (1 - n * n / computed), 1) if computed else None,
               "registers": m.get("launch__registers_per_thread"),
               "occupancy_pct": m.get("sm__warps_active.avg.pct_of_peak_sustained_active"),
               "issue_busy_pct": m.get("smsp__issue_active.avg.pct_of_peak_sustained_active"),
               "ncu_us": round(m["gpu__time_duration.sum"] / 1e3, 1) if m.get("gpu__time_duration.sum") else None,
               "by_pipe": {k.split("pipe_")[1].split(".")[0]: per32(v) for k, v in m.items() if "_pipe_" in k},
               "kernels": entry["kernels"]}
        if label in sass:
            row["sass_loop"] = sass[label]
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    pipes = ("alu", "fma", "uniform", "lsu", "xu", "tensor")
    head = ("| workload | kernel | instr / 32 useful | " + " | ".join(pipes)
            + " | padding % | registers | occupancy % | issue busy % | ncu us |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [r["workload"], r["kernel"], r["per_32_useful"]] + [r["by_pipe"].get(p, "") for p in pipes]
        cells += [r["padding_pct"], r["registers"], r["occupancy_pct"], r["issue_busy_pct"], r["ncu_us"]]
        lines.append("| " + " | ".join("" if c is None else str(round(c, 1) if isinstance(c, float) else c)
                                      for c in cells) + " |")
    loops = [r for r in rows if r.get("sass_loop")]
    if loops:
        lines += ["", "Key-tile loop of the SASS (instructions per thread and 64-key tile, by kind):", ""]
        for r in loops:
            s = r["sass_loop"]
            lines.append(f"- {r['workload']} {r['kernel']}: {s['loop_instructions']} in the loop ("
                         + ", ".join(f"{k} {v}" for k, v in s["loop_by_kind"].items()) + ")")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=["A1", "A3", "A4"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--old", default=None, help="an earlier kernels/ folder, importable under this name")
    ap.add_argument("--out", default="results/budget")
    ap.add_argument("--sass-only", action="store_true", help="only the SASS loop histograms (no GPU needed)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--only", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.batch, a.old, a.only)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.sass_only:
        report = {w: compiled_sass(w, a.batch, a.old) for w in a.workloads}
        (out / "budget-sass.json").write_text(json.dumps(report, indent=1))
        for w, entries in report.items():
            for label, s in entries.items():
                print(w, label, s["loop_instructions"], s["loop_by_kind"], flush=True)
        return
    import torch

    from qflash_eval.provenance import provenance

    rows = []
    for w in a.workloads:
        counters, metrics = profile(w, a.batch, a.old)
        try:
            sass = compiled_sass(w, a.batch, a.old)
        except Exception as err:  # noqa: BLE001 - the counters stand without the SASS split
            print(f"SASS of {w} not read: {err}", flush=True)
            sass = {}
        rows += budget_rows(w, a.batch, a.old, counters, sass)
        print(markdown([r for r in rows if r["workload"] == w]), flush=True)
    (out / "budget.json").write_text(json.dumps({"provenance": provenance(torch.cuda.get_device_name(), 1), "metrics": metrics, "rows": rows},
                                                indent=1, default=str))
    (out / "budget.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
