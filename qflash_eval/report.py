"""Accuracy tables from per-image outcomes; JSON, CSV and Markdown files; merging saved results."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import pathlib
import platform
import subprocess
from importlib import metadata
from typing import Optional

REFERENCE_MODE = "fp16"
PACKAGES = ("torch", "triton", "timm", "datasets", "accelerate", "safetensors", "numpy", "pillow")
COLUMNS = ("mode", "top1", "top5", "delta_top1", "delta_top1_ci95", "agreement", "count", "images_per_s")


def summarize(modes: list[str], rows: list[tuple], seconds: list[float]) -> dict:
    """rows: (index, label, [top1 per mode], [hit5 per mode]) for every image, each image once."""
    n = len(rows)
    ref = modes.index(REFERENCE_MODE) if REFERENCE_MODE in modes else None
    results = {}
    for j, mode in enumerate(modes):
        correct = [r[2][j] == r[1] for r in rows]
        entry = {
            "top1": _pct(sum(correct), n),
            "top5": _pct(sum(bool(r[3][j]) for r in rows), n),
            "count": n,
            "correct_top1": sum(correct),
            "images_per_s": round(n / seconds[j], 2) if seconds[j] > 0 else None,
            "agreement": None,
            "delta_top1": None,
            "delta_top1_ci95": None,
        }
        if ref is not None and n:
            ref_correct = [r[2][ref] == r[1] for r in rows]
            entry["agreement"] = _pct(sum(r[2][j] == r[2][ref] for r in rows), n)
            diffs = [int(a) - int(b) for a, b in zip(correct, ref_correct)]
            mean, half = paired_interval(diffs)
            entry["delta_top1"] = round(100 * mean, 3)
            entry["delta_top1_ci95"] = [round(100 * (mean - half), 3), round(100 * (mean + half), 3)]
        results[mode] = entry
    return results


def timing(images: int, wall: float, data_wait: float, first_batch: float, model_seconds: list[float],
           warmup_seconds: dict) -> dict:
    """Where the loop's time went (slowest process of each): the first batch (decode workers starting),
    warm-up passes (compile, autotune), waiting for later batches, the models, and the loop's own work."""
    warmup = sum(warmup_seconds.values())
    models = sum(model_seconds)
    after_start = wall - first_batch - warmup
    return {
        "wall_s": round(wall, 3),
        "first_batch_wait_s": round(first_batch, 3),
        "warmup_s": {m: round(w, 3) for m, w in warmup_seconds.items()},
        "data_wait_s": round(data_wait, 3),
        "model_s": round(models, 3),
        "loop_other_s": round(max(wall - first_batch - warmup - data_wait - models, 0.0), 3),
        "data_wait_fraction": round(data_wait / after_start, 3) if after_start > 0 else None,
        "images_per_s": round(images / wall, 1) if wall > 0 else None,
    }


def paired_interval(diffs: list[int]) -> tuple[float, float]:
    """Mean of paired differences and the half-width of its normal 95 % interval."""
    n = len(diffs)
    if n < 2:
        return (float(diffs[0]) if diffs else 0.0), float("nan")
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return mean, 1.96 * math.sqrt(var / n)


def _pct(k: int, n: int) -> Optional[float]:
    return round(100.0 * k / n, 3) if n else None


def provenance(device_name: str, world_size: int) -> dict:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    versions["python"] = platform.python_version()
    root = pathlib.Path(__file__).resolve().parents[1]
    return {"device": device_name, "processes": world_size, "versions": versions, "commit": git_commit(),
            "source_sha256": source_fingerprint(root)}


SOURCE_GLOBS = ("kernels/*.py", "qflash_eval/*.py", "eval.py", "configs/*.toml")


def source_fingerprint(root: pathlib.Path) -> str:
    """SHA-256 (16 hex digits) over the code that produces results: identifies it where git cannot (a
    copy of a working tree, an uncommitted change)."""
    digest = hashlib.sha256()
    for path in sorted({p for pattern in SOURCE_GLOBS for p in root.glob(pattern)}):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def git_commit() -> Optional[str]:
    root = pathlib.Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if sha.returncode:
        return None
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _fmt(value, digits=2) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return f"[{value[0]:+.{digits}f}, {value[1]:+.{digits}f}]"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table_rows(report: dict) -> list[list[str]]:
    out = []
    for mode, r in report["results"].items():
        delta = None if r["delta_top1"] is None else f"{r['delta_top1']:+.2f}"
        out.append([mode, _fmt(r["top1"]), _fmt(r["top5"]), delta or "-", _fmt(r["delta_top1_ci95"]),
                    _fmt(r["agreement"]), str(r["count"]), _fmt(r["images_per_s"], 1)])
    return out


HEADER = ["mode", "Top-1 %", "Top-5 %", "dTop-1 vs fp16", "95% CI (paired)", "agree w/ fp16 %", "images", "images/s"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    p = report["provenance"]
    head = (
        f"**{report['model']}** ({report['weights']}), data {report['data']['source']} "
        f"({report['data']['count']} images), granularity {report['granularity']}, batch {report['batch_size']}, "
        f"{p['device']}" + (", CUDA graphs" if report.get("cuda_graphs") else "")
        + (" — INTERRUPTED, partial" if report.get("interrupted") else "")
    )
    text = head + "\n\n" + markdown_table(HEADER, table_rows(report)) + "\n"
    t = report.get("timing")
    if t:
        text += (f"\n{t['images_per_s']} images/s overall ({p['processes']} process(es), wall {t['wall_s']} s: "
                 f"first batch {t['first_batch_wait_s']} s, warm-up {sum(t['warmup_s'].values()):.3f} s, "
                 f"waiting for data {t['data_wait_s']} s, models {t['model_s']} s, "
                 f"rest of the loop {t['loop_other_s']} s)\n")
    return text


def write_outputs(report: dict, json_path: pathlib.Path, prediction_rows: list[tuple]) -> list[pathlib.Path]:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    csv_path = json_path.with_suffix(".csv")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(list(COLUMNS))
    for mode, r in report["results"].items():
        writer.writerow([mode] + [json.dumps(r[c]) if isinstance(r[c], list) else r[c] for c in COLUMNS[1:]])
    csv_path.write_text(buf.getvalue())
    md_path = json_path.with_suffix(".md")
    md_path.write_text(markdown(report))
    pred_path = json_path.with_name(json_path.stem + ".predictions.csv")
    modes = list(report["results"])
    with open(pred_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "label"] + [f"top1_{m}" for m in modes] + [f"top5_hit_{m}" for m in modes])
        for index, label, top1, hit5 in sorted(prediction_rows):
            w.writerow([index, label] + list(top1) + [int(h) for h in hit5])
    return [json_path, csv_path, md_path, pred_path]


def compare(paths: list[str]) -> str:
    """One Markdown table of several saved result files."""
    header = ["run", "model", "mode", "Top-1 %", "Top-5 %", "dTop-1 vs fp16", "agree w/ fp16 %", "images",
              "granularity", "dtype", "data"]
    rows = []
    for path in paths:
        try:
            report = json.loads(pathlib.Path(path).read_text())
            results = report["results"]
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path} is not a qflash-eval results file: {err}") from err
        for mode, r in results.items():
            delta = "-" if r.get("delta_top1") is None else f"{r['delta_top1']:+.2f}"
            rows.append([pathlib.Path(path).stem, report.get("model", "?"), mode, _fmt(r.get("top1")),
                         _fmt(r.get("top5")), delta, _fmt(r.get("agreement")), str(r.get("count")),
                         report.get("granularity", "?"), str(r.get("dtype", "?")),
                         f"{report['data']['source']} ({report['data']['count']})"])
    return markdown_table(header, rows)
