"""The fallback table (JSON, Markdown) and chart: per step, the layers in fp16, agreement with fp16 on the
calibration and on the evaluation images, Top-1 with its Wilson 95 % interval, and images/s."""
from __future__ import annotations

import json
import pathlib

from ..charts import figure_png
from ..outputs import write_beside
from ..stats import wilson_interval
from .speed import method


def fallback_table(results: pathlib.Path, mode: str, ranking, steps: list[dict], positions: list[int],
                   target=None, max_layers=None, speeds=None, batch=None) -> dict:
    """speeds: {mode: images/s} measured by speed.images_per_second (CUDA); without them, none are given."""
    report = json.loads(results.read_text())
    speeds = speeds or {}
    rows = []
    for step in steps:
        entry = report["results"].get(step["mode"])
        if entry is None:  # the evaluation stopped before this step's mode ran
            continue
        low, high = wilson_interval(entry["correct_top1"], entry["count"])
        rows.append({**step, "agreement": entry["agreement"], "top1": entry["top1"],
                     "top1_ci95": [round(100 * low, 2), round(100 * high, 2)], "count": entry["count"],
                     "images_per_s": speeds.get(step["mode"])})
    return {"model": report["model"], "mode": mode, "target_agreement": target, "max_float_layers": max_layers,
            "ranking_sqnr_db": [[i, round(s, 2)] for i, s in ranking],
            "calibration": {"images": len(positions), "positions": positions,
                            "rule": "evenly spaced over the images the evaluation leaves out"},
            "fp16": {"top1": report["results"]["fp16"]["top1"], "images_per_s": speeds.get("fp16")},
            "speed": method(batch) if speeds else "not measured (images/s on CUDA only)",
            "device": (report.get("provenance") or {}).get("device"), "evaluation": str(results),
            "data": report["data"], "provenance": report.get("provenance"), "rows": rows}


def markdown(table: dict) -> str:
    goal = (f"target {table['target_agreement']} % agreement" if table["target_agreement"] is not None
            else f"up to {table['max_float_layers']} layers" if table["max_float_layers"] is not None else "")
    evaluated = table["rows"][0]["count"] if table["rows"] else 0
    fp16_speed = table["fp16"]["images_per_s"]
    lines = [f"**{table['model']}**, {table['mode']}: layers kept in fp16, worst first ({goal}; ranked on "
             f"{table['calibration']['images']} calibration images, evaluated on {evaluated} others); fp16 Top-1 "
             f"{table['fp16']['top1']:.2f} %" + (f", {fp16_speed} images/s" if fp16_speed else "")
             + f" on {table['device']}; images/s: {table.get('speed', '-')}", "",
             "| fp16 layers | agreement, calibration % | agreement, evaluation % | Top-1 % | 95 % interval | images/s |",
             "|---|---|---|---|---|---|"]
    for r in table["rows"]:
        lines.append(f"| {r['float_layers'] or 'none'} | {r['calibration_agreement']:.2f} | {r['agreement']:.2f} | "
                     f"{r['top1']:.2f} | {r['top1_ci95'][0]:.2f}-{r['top1_ci95'][1]:.2f} | "
                     f"{r['images_per_s'] or '-'} |")
    return "\n".join(lines) + "\n"


def chart(table: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table["rows"]
    x = [len(r["float_layers"]) for r in rows]
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot(x, [r["agreement"] for r in rows], "o-", label="agreement with fp16 %")
    left.plot(x, [r["top1"] for r in rows], "s-", label="Top-1 %")
    left.errorbar(x, [r["top1"] for r in rows], yerr=[[r["top1"] - r["top1_ci95"][0] for r in rows],
                                                      [r["top1_ci95"][1] - r["top1"] for r in rows]], fmt="none",
                  ecolor="gray", capsize=3)
    left.set_xlabel("attention layers in fp16 (worst first)")
    left.set_ylabel("%")
    speeds = [r["images_per_s"] for r in rows]
    if all(s is not None for s in speeds):
        right = left.twinx()
        right.plot(x, speeds, "^--", color="gray", label="images/s")
        right.set_ylabel("images/s")
    left.legend(loc="lower right", fontsize=8)
    left.set_title(f"{table['model']}: {table['mode']} with fp16 layers")
    return figure_png(fig)


def write(table: dict, results: pathlib.Path) -> list[pathlib.Path]:
    """NAME.fallback.md, .png, .json beside the evaluation's NAME.json; prints the table."""
    print(markdown(table))
    return write_beside(results, "fallback", markdown(table), chart(table), table)
