"""The robustness table: a row per mode, a column per set, each cell Top-1 and its change from fp16 on the
same images (the report's delta_top1); ReaL is the clean run's ReaL Top-1. A chart of the changes beside it."""
from __future__ import annotations

from typing import Optional

from ..charts import figure_png
from ..modes import REFERENCE_MODE
from ..report import markdown_table
from .sets import SET_ORDER, set_of


def robustness_rows(named: list[tuple[str, dict]], overrides: Optional[dict] = None) -> tuple[dict, list[str]]:
    """({set: {mode: (top1, change from fp16 or None)}}, warning lines) of the runs; overrides: {run: set}."""
    overrides = overrides or {}
    cells: dict = {}
    warnings, seen = [], {}
    for name, report in named:
        which = overrides.get(name) or set_of(report)
        if which in seen:
            warnings.append(f"warning: runs {seen[which]} and {name} both scored {which}: the table shows {name}")
        seen[which] = name
        results = report["results"]
        cells[which] = {mode: (r["top1"], None if mode == REFERENCE_MODE else r.get("delta_top1"))
                        for mode, r in results.items() if r.get("top1") is not None}
        real = {mode: r["real_top1"] for mode, r in results.items() if r.get("real_top1") is not None}
        if which == "clean" and real:
            base = real.get(REFERENCE_MODE)
            cells["ReaL"] = {mode: (t, None if base is None or mode == REFERENCE_MODE else t - base)
                             for mode, t in real.items()}
    return cells, warnings


def _columns(cells: dict) -> list[str]:
    return [s for s in SET_ORDER if s in cells] + sorted(s for s in cells if s not in SET_ORDER)


def robustness_table(cells: dict) -> str:
    """Markdown: Top-1 % per mode (rows) and set (columns), each non-fp16 cell with its change from fp16."""
    columns = _columns(cells)
    modes = list(dict.fromkeys(m for s in columns for m in cells[s]))
    rows = []
    for mode in modes:
        row = [mode]
        for s in columns:
            top1, change = cells[s].get(mode, (None, None))
            row.append("-" if top1 is None else f"{top1:.2f}" + ("" if change is None else f" ({change:+.2f})"))
        rows.append(row)
    return markdown_table(["mode", *columns], rows)


def robustness_chart(cells: dict) -> Optional[bytes]:
    """PNG bytes: the change of Top-1 from fp16 per set, a bar per mode; None with nothing to draw."""
    columns = _columns(cells)
    modes = [m for m in dict.fromkeys(m for s in columns for m in cells[s]) if m != REFERENCE_MODE]
    if not modes:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(columns) * max(1, len(modes)) / 2 + 3), 4))
    for j, mode in enumerate(modes):
        xs = [i + (j - (len(modes) - 1) / 2) * width for i, s in enumerate(columns)
              if cells[s].get(mode, (None, None))[1] is not None]
        changes = [cells[s][mode][1] for s in columns if cells[s].get(mode, (None, None))[1] is not None]
        ax.bar(xs, changes, width, label=mode, color=f"C{j + 1}")
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_ylabel("Top-1 change from fp16, points")
    ax.set_title("Integer attention across the robustness sets (same images per set)")
    ax.legend(fontsize=8)
    return figure_png(fig)
