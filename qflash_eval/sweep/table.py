"""The sweep's table (JSON, Markdown) and chart: per setting of the knob, agreement with fp16, Top-1 with its
Wilson 95 % interval, and the first layers' attention SQNR; the default and the paper's setting marked."""
from __future__ import annotations

import json
import pathlib

from ..charts import figure_png
from ..outputs import write_beside
from ..stats import wilson_interval


def sweep_table(results: pathlib.Path, settings: list[str], base: str, knob: str, default: int, sqnr: dict,
                first_layers: int) -> dict:
    from ..variants import parse_knobs
    from ..variants.knobs import PAPER_SETTING

    report = json.loads(results.read_text())
    rows = []
    for setting in settings:
        entry = report["results"].get(setting)
        if entry is None:  # the evaluation stopped before this setting ran
            continue
        low, high = wilson_interval(entry["correct_top1"], entry["count"])
        rows.append({"setting": setting, knob: parse_knobs(setting)[1][knob], "top1": entry["top1"],
                     "top1_ci95": [round(100 * low, 2), round(100 * high, 2)], "agreement": entry["agreement"],
                     "count": entry["count"], "sqnr_first_layers_db": round(sqnr[setting], 2)})
    return {"model": report["model"], "mode": base, "knob": knob, "default": default,
            "paper": PAPER_SETTING.get(base, {}).get(knob), "first_layers": first_layers,
            "fp16_top1": report["results"]["fp16"]["top1"], "data": report["data"], "evaluation": str(results),
            "provenance": report.get("provenance"), "rows": rows}


def markdown(table: dict) -> str:
    k = table["knob"]
    lines = [f"**{table['model']}**, {table['mode']}: {k} swept (default {table['default']}"
             + (f", the paper's {table['paper']}" if table["paper"] is not None else "") + f"); fp16 Top-1 "
             f"{table['fp16_top1']:.2f} %", "",
             f"| {k} | agreement with fp16 % | Top-1 % | 95 % interval | SQNR first {table['first_layers']} layers dB |",
             "|---|---|---|---|---|"]
    for r in table["rows"]:
        mark = " (default)" if r[k] == table["default"] else " (paper)" if r[k] == table["paper"] else ""
        lines.append(f"| {r[k]}{mark} | {r['agreement']:.2f} | {r['top1']:.2f} | {r['top1_ci95'][0]:.2f}-"
                     f"{r['top1_ci95'][1]:.2f} | {r['sqnr_first_layers_db']:.2f} |")
    return "\n".join(lines) + "\n"


def chart(table: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k, rows = table["knob"], table["rows"]
    x = [r[k] for r in rows]
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot(x, [r["agreement"] for r in rows], "o-", label="agreement with fp16 %")
    left.plot(x, [r["top1"] for r in rows], "s-", label="Top-1 %")
    left.set_xlabel(k)
    left.set_ylabel("%")
    right = left.twinx()
    right.plot(x, [r["sqnr_first_layers_db"] for r in rows], "^--", color="gray",
               label=f"SQNR, first {table['first_layers']} layers (dB)")
    right.set_ylabel("dB")
    for value, name in ((table["default"], "default"), (table["paper"], "paper")):
        if value is not None and value in x:
            left.axvline(value, color="k", linestyle=":", linewidth=1)
            left.annotate(name, (value, left.get_ylim()[0]), rotation=90, va="bottom", ha="right", fontsize=8)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.legend(handles, labels, loc="center right", fontsize=8)
    left.set_title(f"{table['model']}: {table['mode']} {k}")
    return figure_png(fig)



def write(table: dict, results: pathlib.Path) -> list[pathlib.Path]:
    """NAME.sweep.md, .png, .json beside the evaluation's NAME.json; prints the table."""
    print(markdown(table))
    return write_beside(results, "sweep", markdown(table), chart(table), table)
