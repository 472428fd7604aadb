"""Writing a report: JSON, CSV, Markdown and per-image predictions beside each other."""
from __future__ import annotations

import csv
import io
import json
import pathlib

from .report import markdown

COLUMNS = ("mode", "top1", "top5", "delta_top1", "delta_top1_ci95", "agreement", "count", "images_per_s")


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
