"""The report of one run: assembly from the run's pieces, the timing breakdown, and its Markdown text."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pathlib
import sys
from typing import Optional

from .labels import real_labels_section
from .modes import MODES
from .prepared import PreparedRun
from .provenance import provenance
from .run_config import RunConfig
from .stats import per_class, summarize

SCHEMA_VERSION = 4  # 4: settings hold every RunConfig field


def build_report(run: PreparedRun, gathered, device_label: str, data_config: dict, stop_signal=None) -> dict:
    """The results JSON: per-mode accuracy and statistics, and everything that produced them."""
    config, loaded, source = run.config, run.loaded, run.source
    rows = gathered.rows
    results = summarize(run.modes, rows, gathered.model_seconds)
    real_section, real_scores = real_labels_section(config.real_labels, run.modes, rows)
    for mode, scores in real_scores.items():
        results[mode].update(scores)
    for m in run.mode_models:
        entry = results[m.mode]
        mode = MODES[m.mode]
        entry["dtype"] = str(m.dtype).replace("torch.", "")
        entry["attention"] = mode.description
        entry["attention_modules_replaced"] = m.replaced
        entry.update(mode.report_fields(m.config, run.device))
        entry["cuda_graphs"] = m.graphed.describe() if m.graphed is not None else None
    alias = loaded.alias
    complete = not gathered.interrupted and not gathered.stopped
    return {
        "schema_version": SCHEMA_VERSION,
        "model": config.model,
        "timm_name": loaded.timm_name,
        "model_info": {"param_count": loaded.param_count},
        "weights": loaded.weights,
        "weights_sha256": loaded.weights_sha256,
        "paper_top1": {"fp32": alias.paper_fp32_top1, "qflash": alias.paper_qflash_top1} if alias else None,
        "data": {"source": source.describe(), "count": len(rows), "expected": source.size,
                 "source_size": source.source_size, "requested": config.num_samples, "selection": source.selection,
                 "transform": data_config},
        "granularity": config.granularity,
        "calibration": run.calibration,
        "float_layers": run.float_layers,
        "real_labels": real_section,
        "valid_labels": ({k: v for k, v in run.valid_labels.items() if k != "indices"}
                         if run.valid_labels else None),
        "batch_size": config.batch_size,
        "batch_sizes_run": {str(k): v for k, v in gathered.batch_sizes.items()},
        "workers": run.workers,
        "cuda_graphs": config.cuda_graphs,
        "complete": complete,
        "interrupted": gathered.interrupted,
        "interrupted_by": stop_signal if gathered.interrupted else None,
        "stopped": gathered.stopped or None,
        "unusable": [{"index": i, "name": name, "reason": reason} for i, name, reason in gathered.unusable],
        "skip_unreadable": config.skip_unreadable,
        "resumed_from": run.prior.describe() if run.prior is not None else None,
        "settings": settings_of(config, loaded),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "eval.py " + " ".join(sys.argv[1:]),
        "provenance": provenance(device_label, run.accelerator.num_processes),
        "results": results,
        "per_class": per_class(run.modes, rows),
    }


def settings_of(config: RunConfig, loaded) -> dict:
    """Every setting of the run (asdict of its RunConfig), local paths made absolute so that --resume works
    from anywhere, and the weights as loaded (None for the hub's)."""
    settings = dataclasses.asdict(config)
    settings["weights"] = None if loaded.weights.startswith("hub:") else loaded.weights
    for key in ("data", "weights_dir", "results", "resume"):
        if settings[key] and pathlib.Path(settings[key]).expanduser().exists():
            settings[key] = str(pathlib.Path(settings[key]).expanduser().resolve())
    return settings


def timing(images: int, wall: float, data_wait: float, first_batch: float, model_seconds: list[float],
           warmup_seconds: dict, prepare_seconds: float = 0.0, prepare_steps: Optional[dict] = None) -> dict:
    """Where the loop's time went (slowest process of each): the first batch (decode workers starting),
    warm-up passes (compile, autotune), waiting for later batches, the models, and the loop's own work;
    before the loop, preparing (model, mode copies on the device) and the process's age when it began."""
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
        "prepare_s": round(prepare_seconds, 3),
        "prepare_steps_s": dict(prepare_steps or {}),
        "process_age_at_loop_start_s": _process_age(wall),
    }


def _process_age(since: float) -> Optional[float]:
    """Seconds from this process's start to `since` seconds ago (Linux /proc; None elsewhere): imports and
    preparation, the start-up a user waits through before the first batch."""
    try:
        ticks = int(pathlib.Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(pathlib.Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - ticks / os.sysconf("SC_CLK_TCK") - since, 3)


def format_cell(value, digits=2) -> str:
    """A table cell: '-' for None, a signed interval for a pair, `digits` decimals for a float."""
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


IMAGENET_VAL_IMAGES = 50000


def paper_cell(report: dict, mode: str) -> str:
    """The paper's Top-1 for this model in the mode's paper column (modes.Mode.paper_column), marked (n/c),
    not comparable, unless the whole validation set ran."""
    paper = report.get("paper_top1") or {}
    key = MODES[mode].paper_column if mode in MODES else None
    if key is None or paper.get(key) is None:
        return "-"
    comparable = report["data"]["count"] >= IMAGENET_VAL_IMAGES and report.get("complete", True)
    return f"{paper[key]:.2f}" + ("" if comparable else " (n/c)")


def table_rows(report: dict) -> list[list[str]]:
    out = []
    for mode, r in report["results"].items():
        delta = None if r.get("delta_top1") is None else f"{r['delta_top1']:+.2f}"
        out.append([mode, format_cell(r["top1"]), format_cell(r["top5"]), delta or "-", format_cell(r.get("delta_top1_ci95")),
                    _discordant(r), _p_value(r), format_cell(r.get("agreement")), str(r["count"]),
                    format_cell(r.get("images_per_s"), 1), paper_cell(report, mode)])
    return out


HEADER = ["mode", "Top-1 %", "Top-5 %", "dTop-1 vs fp16", "95% CI (Newcombe)", "only mode / only fp16 right",
          "McNemar p", "agree w/ fp16 %", "images", "images/s", "paper Top-1 %"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def paper_line(report: dict) -> str:
    """The paper's reported Top-1 for this model, and whether this run's count makes it comparable."""
    paper = report.get("paper_top1")
    if not paper:
        return ""
    count = report["data"]["count"]
    note = "" if count >= IMAGENET_VAL_IMAGES else f" (not comparable: {count} of the {IMAGENET_VAL_IMAGES} validation images ran)"
    return f"\nThe paper reports Top-1 FP32 {paper['fp32']:.2f} %, QFlash {paper['qflash']:.2f} %{note}.\n"


def calibration_line(report: dict) -> str:
    """Expected calibration error, NLL and KL from fp16 per mode, where measured."""
    parts = [f"{mode} {r['ece']:.2f} / {r['nll']:.3f}" + (f" / {r['kl_from_fp16']:.4f}" if r.get("kl_from_fp16")
                                                          is not None else "")
             for mode, r in report["results"].items() if r.get("ece") is not None]
    if not parts:
        return ""
    return ("\nCalibration, ECE % (15 bins) / NLL / KL(fp16 || mode) in nats: " + ", ".join(parts) + "\n")


def real_line(report: dict) -> str:
    """ReaL Top-1 / Top-5 per mode where the ReaL labels applied."""
    real = report.get("real_labels") or {}
    if not real.get("applied"):
        return ""
    scores = ", ".join(f"{mode} {r['real_top1']:.2f} / {r['real_top5']:.2f}" for mode, r in report["results"].items()
                       if r.get("real_top1") is not None)
    return (f"\nReaL Top-1 / Top-5 % ({real['scored']} images scored, {real['left_out_empty']} with no ReaL label "
            f"left out): {scores}\n")


def markdown(report: dict) -> str:
    p = report["provenance"]
    head = (
        f"**{report['model']}** ({report['weights']}), data {report['data']['source']} "
        f"({report['data']['count']} images), granularity {report['granularity']}, batch {report['batch_size']}, "
        f"{p['device']}" + (", CUDA graphs" if report.get("cuda_graphs") else "")
        + (" — INTERRUPTED, partial" if report.get("interrupted") else "")
        + (" — STOPPED EARLY, partial" if report.get("stopped") else "")
    )
    text = head + "\n\n" + markdown_table(HEADER, table_rows(report)) + "\n" + paper_line(report) + real_line(report)
    text += calibration_line(report)
    for reason in report.get("stopped") or []:
        text += f"\nStopped: {reason}\n"
    skipped = report.get("unusable") or []
    if skipped and not report.get("stopped"):
        text += (f"\n{len(skipped)} unusable item(s) skipped: every denominator above is {report['data']['count']}, "
                 f"not {report['data']['expected']}. First: {skipped[0]['name']} ({skipped[0]['reason']})\n")
    t = report.get("timing")
    if t:
        text += (f"\n{t['images_per_s']} images/s overall ({p['processes']} process(es), wall {t['wall_s']} s: "
                 f"first batch {t['first_batch_wait_s']} s, warm-up {sum(t['warmup_s'].values()):.3f} s, "
                 f"waiting for data {t['data_wait_s']} s, models {t['model_s']} s, "
                 f"rest of the loop {t['loop_other_s']} s)\n")
    return text
