"""`eval.py compare`: one table from several saved results files."""
from __future__ import annotations

import json
import pathlib

from .report import _fmt, markdown_table


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
