"""`eval.py compare`: one table from several saved results files, with a warning where they differ.

Imports no torch: it starts at once.
"""
from __future__ import annotations

import json
import pathlib
from typing import Optional

from .report import IMAGENET_VAL_IMAGES, format_cell, markdown_table, paper_cell

HEADER = ["run", "model", "mode", "Top-1 %", "Top-5 %", "dTop-1 vs fp16", "95% CI", "McNemar p", "agree w/ fp16 %",
          "images", "granularity", "dtype", "paper Top-1 %", "data"]


def read_report(path) -> dict:
    """A results JSON written by eval.py, or a ValueError that says what is wrong with it."""
    path = pathlib.Path(path)
    try:
        report = json.loads(path.read_text())
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from err
    except ValueError as err:
        raise ValueError(f"{path} is not JSON: {err}") from err
    if not isinstance(report, dict) or not isinstance(report.get("results"), dict):
        raise ValueError(f"{path} is not a qflash-eval results file (no 'results' table)")
    if not isinstance(report.get("data"), dict) or "source" not in report["data"] or "count" not in report["data"]:
        raise ValueError(f"{path} is not a qflash-eval results file (no 'data' source and count)")
    return report


def differences(named: list[tuple[str, dict]], skip: tuple = ()) -> list[str]:
    """Warning lines: runs that differ in model, image set, granularity or completeness (less those in skip)."""
    if len(named) < 2:
        return []
    checks = {
        "model": lambda r: r.get("timm_name") or r.get("model"),
        "image set": lambda r: (r["data"]["source"], r["data"].get("selection"), r["data"]["count"]),
        "granularity": lambda r: r.get("granularity"),
        "completeness": lambda r: "partial" if (r.get("interrupted") or r.get("stopped") or r.get("unusable"))
        else "complete",
    }
    lines = []
    for what, key in checks.items():
        if what in skip:
            continue
        values = {}
        for name, r in named:
            values.setdefault(str(key(r)), []).append(name)
        if len(values) > 1:
            lines.append(f"warning: the runs differ in {what}: " + "; ".join(
                f"{', '.join(names)}: {value}" for value, names in values.items()))
    return lines


def rows_of(name: str, report: dict) -> list[list[str]]:
    rows = []
    for mode, r in report["results"].items():
        delta = "-" if r.get("delta_top1") is None else f"{r['delta_top1']:+.2f}"
        p = r.get("mcnemar_p")
        rows.append([name, report.get("model", "?"), mode, format_cell(r.get("top1")), format_cell(r.get("top5")),
                     delta, format_cell(r.get("delta_top1_ci95")), "-" if p is None else f"{p:.3g}",
                     format_cell(r.get("agreement")),
                     str(r.get("count")), report.get("granularity", "?"), str(r.get("dtype", "?")),
                     paper_cell(report, mode), f"{report['data']['source']} ({report['data']['count']})"])
    return rows


def compare_reports(named: list[tuple[str, dict]]) -> str:
    rows = [row for name, report in named for row in rows_of(name, report)]
    text = markdown_table(HEADER, rows)
    if any(report.get("paper_top1") for _, report in named):
        text += (f"\n\npaper Top-1: the paper's reported FP32 (fp32 rows) and QFlash (qflash rows) numbers; (n/c) = "
                 f"not comparable, fewer than the {IMAGENET_VAL_IMAGES} validation images ran.")
    return text


def compare(paths: list[str], sets: Optional[dict] = None) -> tuple[str, list[str], list[tuple[str, dict]]]:
    """(the Markdown table, warning lines, the reports by run name) of several saved result files; where they
    span several evaluation sets (or the clean run has ReaL), the robustness table follows (sets: {run: set},
    overriding the guess from each run's data)."""
    from .robustness import robustness_rows, robustness_table

    named = [(pathlib.Path(p).stem, read_report(p)) for p in paths]
    unknown = sorted(set(sets or {}) - {name for name, _ in named})
    if unknown:
        raise ValueError(f"--set names run(s) {', '.join(unknown)}, not among {', '.join(n for n, _ in named)}")
    cells, set_warnings = robustness_rows(named, sets)
    several_sets = len({s for s in cells if s != "ReaL"}) > 1  # their images differ by design
    text, warnings = compare_reports(named), differences(named, skip=("image set",) if several_sets else ())
    if len(cells) > 1:
        text += "\n\nTop-1 % by evaluation set (change from fp16 on the same images):\n\n" + robustness_table(cells)
    return text, warnings + set_warnings, named
