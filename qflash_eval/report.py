"""The report of one run: assembly from the run's pieces, the timing breakdown, and its Markdown text."""
from __future__ import annotations

import datetime as dt
import sys
from typing import Optional

from .modes import MODES
from .provenance import provenance
from .stats import summarize

SCHEMA_VERSION = 2


def build_report(args, loaded, source, mode_models, rows, seconds, device, device_label, world, interrupted,
                 calibration, data_config) -> dict:
    """The results JSON: per-mode accuracy and statistics, and everything that produced them."""
    modes = [m.mode for m in mode_models]
    results = summarize(modes, rows, seconds)
    for m in mode_models:
        entry = results[m.mode]
        mode = MODES[m.mode]
        entry["dtype"] = str(m.dtype).replace("torch.", "")
        entry["attention"] = mode.description
        entry["attention_modules_replaced"] = m.replaced
        entry.update(mode.report_fields(m.config, device))
        entry["cuda_graphs"] = m.graphed.describe() if m.graphed is not None else None
    alias = loaded.alias
    return {
        "schema_version": SCHEMA_VERSION,
        "model": args.model,
        "timm_name": loaded.timm_name,
        "weights": loaded.weights,
        "weights_sha256": loaded.weights_sha256,
        "paper_top1": {"fp32": alias.paper_fp32_top1, "qflash": alias.paper_qflash_top1} if alias else None,
        "data": {"source": source.describe(), "count": len(rows), "requested": args.num_samples,
                 "transform": data_config},
        "granularity": args.granularity,
        "calibration": calibration,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "cuda_graphs": bool(args.cuda_graphs),
        "interrupted": interrupted,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "eval.py " + " ".join(sys.argv[1:]),
        "provenance": provenance(device_label, world),
        "results": results,
    }


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


def _fmt(value, digits=2) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return f"[{value[0]:+.{digits}f}, {value[1]:+.{digits}f}]"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _discordant(r: dict) -> str:
    d = r.get("discordant")
    return "-" if d is None else f"{d['only_mode_right']} / {d['only_fp16_right']}"


def _p_value(r: dict) -> str:
    p = r.get("mcnemar_p")
    return "-" if p is None else f"{p:.3g}"


def table_rows(report: dict) -> list[list[str]]:
    out = []
    for mode, r in report["results"].items():
        delta = None if r.get("delta_top1") is None else f"{r['delta_top1']:+.2f}"
        out.append([mode, _fmt(r["top1"]), _fmt(r["top5"]), delta or "-", _fmt(r.get("delta_top1_ci95")),
                    _discordant(r), _p_value(r), _fmt(r.get("agreement")), str(r["count"]),
                    _fmt(r.get("images_per_s"), 1)])
    return out


HEADER = ["mode", "Top-1 %", "Top-5 %", "dTop-1 vs fp16", "95% CI (Newcombe)", "only mode / only fp16 right",
          "McNemar p", "agree w/ fp16 %", "images", "images/s"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


IMAGENET_VAL_IMAGES = 50000


def paper_line(report: dict) -> str:
    """The paper's reported Top-1 for this model, and whether this run's count makes it comparable."""
    paper = report.get("paper_top1")
    if not paper:
        return ""
    count = report["data"]["count"]
    note = "" if count >= IMAGENET_VAL_IMAGES else f" (not comparable: {count} of the {IMAGENET_VAL_IMAGES} validation images ran)"
    return f"\nThe paper reports Top-1 FP32 {paper['fp32']:.2f} %, QFlash {paper['qflash']:.2f} %{note}.\n"


def markdown(report: dict) -> str:
    p = report["provenance"]
    head = (
        f"**{report['model']}** ({report['weights']}), data {report['data']['source']} "
        f"({report['data']['count']} images), granularity {report['granularity']}, batch {report['batch_size']}, "
        f"{p['device']}" + (", CUDA graphs" if report.get("cuda_graphs") else "")
        + (" — INTERRUPTED, partial" if report.get("interrupted") else "")
    )
    text = head + "\n\n" + markdown_table(HEADER, table_rows(report)) + "\n" + paper_line(report)
    t = report.get("timing")
    if t:
        text += (f"\n{t['images_per_s']} images/s overall ({p['processes']} process(es), wall {t['wall_s']} s: "
                 f"first batch {t['first_batch_wait_s']} s, warm-up {sum(t['warmup_s'].values()):.3f} s, "
                 f"waiting for data {t['data_wait_s']} s, models {t['model_s']} s, "
                 f"rest of the loop {t['loop_other_s']} s)\n")
    return text
