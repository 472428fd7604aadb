"""Where a report goes and how it is written: JSON, tidy CSV, Markdown, per-image predictions and a chart,
side by side, checked before the run and each written whole (temporary file, then rename)."""
from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import sys
import tempfile
from dataclasses import dataclass
from typing import Optional

from .outcome import ImageOutcome

RESULT_SUFFIXES = (".json", ".csv")

# one row per (model, mode); numbers as numbers, readable straight into pandas
CSV_COLUMNS = ("model", "timm_name", "mode", "top1", "top1_err", "top5", "top5_err", "count", "agreement",
               "delta_top1", "delta_top1_ci95_low", "delta_top1_ci95_high", "only_mode_right", "only_fp16_right",
               "mcnemar_p", "images_per_s", "param_count", "img_size", "crop_pct", "interpolation", "granularity",
               "dtype", "batch_size", "data_source", "data_count", "unusable_skipped", "interrupted",
               "paper_fp32_top1", "paper_qflash_top1")


@dataclass(frozen=True)
class ResultPaths:
    json: pathlib.Path
    csv: pathlib.Path
    markdown: pathlib.Path
    predictions: pathlib.Path
    chart: pathlib.Path

    @classmethod
    def beside(cls, path: pathlib.Path) -> "ResultPaths":
        """The outputs named as `path` without its .json / .csv suffix (other dots, as in timm names, stay)."""
        stem = path.name[: -len(path.suffix)] if path.suffix.lower() in RESULT_SUFFIXES else path.name
        named = lambda ending: path.with_name(stem + ending)  # noqa: E731
        return cls(named(".json"), named(".csv"), named(".md"), named(".predictions.csv"), named(".png"))

    def all(self) -> list[pathlib.Path]:
        return [self.json, self.csv, self.markdown, self.predictions, self.chart]


def result_paths(results: str, results_format: Optional[str] = None) -> ResultPaths:
    """--results / --results-file: NAME.json or NAME.csv (or NAME with --results-format); every output
    goes beside it under the same name."""
    path = pathlib.Path(results).expanduser()
    if path.suffix.lower() not in RESULT_SUFFIXES and results_format:
        path = path.with_name(f"{path.name}.{results_format}")
    if path.suffix.lower() not in RESULT_SUFFIXES:
        raise ValueError(f"results file {path} must end in .json or .csv (the other outputs are written beside it)")
    return ResultPaths.beside(path)


def check_writable(paths: ResultPaths, overwrite: bool, resuming: Optional[pathlib.Path] = None) -> None:
    """Fail before the evaluation, not after it: the folder can be made and written, no output is a folder,
    and existing outputs are replaced only with --overwrite (or when resuming that very run)."""
    folder = paths.json.parent
    nearest = next(p for p in [folder, *folder.parents] if p.exists())
    if not nearest.is_dir():
        raise ValueError(f"cannot write results under {folder}: {nearest} is a file, not a folder")
    try:  # a real probe: permission bits do not tell for root or read-only mounts
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise ValueError(f"cannot write results in {folder}: {err.strerror or err}") from err
    for p in paths.all():
        if p.is_dir():
            raise ValueError(f"results path {p} is a folder")
    taken = [p for p in paths.all() if p.exists()]
    same_run = resuming is not None and resuming.resolve() == paths.json.resolve()
    if taken and not overwrite and not same_run:
        raise ValueError(f"{taken[0]} already exists: pass --overwrite to replace it, or another --results")


def atomic_write(path: pathlib.Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def tidy_rows(report: dict) -> list[dict]:
    """The CSV rows of one report (one per mode)."""
    model_info = report.get("model_info") or {}
    transform = report.get("data", {}).get("transform") or {}
    paper = report.get("paper_top1") or {}
    rows = []
    for mode, r in report["results"].items():
        ci = r.get("delta_top1_ci95") or [None, None]
        discordant = r.get("discordant") or {}
        rows.append({
            "model": report.get("model"), "timm_name": report.get("timm_name"), "mode": mode,
            "top1": r.get("top1"), "top1_err": _err(r.get("top1")), "top5": r.get("top5"),
            "top5_err": _err(r.get("top5")), "count": r.get("count"), "agreement": r.get("agreement"),
            "delta_top1": r.get("delta_top1"), "delta_top1_ci95_low": ci[0], "delta_top1_ci95_high": ci[1],
            "only_mode_right": discordant.get("only_mode_right"), "only_fp16_right": discordant.get("only_fp16_right"),
            "mcnemar_p": r.get("mcnemar_p"), "ece": r.get("ece"), "nll": r.get("nll"),
            "kl_from_fp16": r.get("kl_from_fp16"), "real_top1": r.get("real_top1"), "real_top5": r.get("real_top5"),
            "images_per_s": r.get("images_per_s"),
            "param_count": model_info.get("param_count"), "img_size": transform.get("input_size", [None])[-1],
            "crop_pct": transform.get("crop_pct"), "interpolation": transform.get("interpolation"),
            "granularity": report.get("granularity") if r.get("attention_modules_replaced") else None,
            "dtype": r.get("dtype"), "batch_size": report.get("batch_size"),
            "data_source": report.get("data", {}).get("source"), "data_count": report.get("data", {}).get("count"),
            "unusable_skipped": len(report.get("unusable") or []), "interrupted": bool(report.get("interrupted")),
            "paper_fp32_top1": paper.get("fp32"), "paper_qflash_top1": paper.get("qflash"),
        })
    return rows


def _err(pct: Optional[float]) -> Optional[float]:
    return None if pct is None else round(100.0 - pct, 3)


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


PREDICTION_COLUMNS = ("index", "name", "label")
# per mode, where recorded: top-1 probability, log p(label), KL from fp16 (ImageOutcome's fields)
PROBABILITY_COLUMNS = ("confidence", "log_p_label", "kl_from_fp16")


def predictions_text(modes: list[str], rows: list[ImageOutcome]) -> str:
    """One row per image: index, file name (or parquet file#row), label, and per mode the top-1 class,
    the top-5 classes (space-separated) and whether the label is among them."""
    buf = io.StringIO()
    w = csv.writer(buf)
    stats = [name for name in PROBABILITY_COLUMNS if rows and all(getattr(r, name) is not None for r in rows)]
    w.writerow(list(PREDICTION_COLUMNS) + [f"top1_{m}" for m in modes] + [f"top5_{m}" for m in modes]
               + [f"top5_hit_{m}" for m in modes] + [f"{name}_{m}" for name in stats for m in modes])
    for r in sorted(rows):
        w.writerow([r.index, r.name, r.label] + list(r.top1) + [" ".join(map(str, t)) for t in r.top5]
                   + [int(h) for h in r.hit5] + [f"{x:.6g}" for name in stats for x in getattr(r, name)])
    return buf.getvalue()


def read_predictions(path: pathlib.Path, modes: list[str]) -> list[ImageOutcome]:
    """The rows predictions_text wrote, for --resume."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        needed = set(PREDICTION_COLUMNS) | {f"{c}_{m}" for m in modes for c in ("top1", "top5", "top5_hit")}
        if not needed <= set(reader.fieldnames or []):
            raise ValueError(f"{path} lacks the columns {sorted(needed - set(reader.fieldnames or []))}")
        present = [name for name in PROBABILITY_COLUMNS
                   if all(f"{name}_{m}" in (reader.fieldnames or []) for m in modes)]
        for line in reader:
            top5 = [[int(c) for c in line[f"top5_{m}"].split()] for m in modes]
            stats = {name: [float(line[f"{name}_{m}"]) for m in modes] for name in present}
            rows.append(ImageOutcome(int(line["index"]), int(line["label"]), [int(line[f"top1_{m}"]) for m in modes],
                                     [bool(int(line[f"top5_hit_{m}"])) for m in modes], top5, line["name"], **stats))
    return rows


def write_outputs(report: dict, paths: ResultPaths, prediction_rows: list[ImageOutcome]) -> list[pathlib.Path]:
    from .charts import accuracy_chart
    from .report import markdown

    # predictions first and the JSON last: a JSON on disk always has its predictions beside it
    atomic_write(paths.predictions, predictions_text(list(report["results"]), prediction_rows))
    atomic_write(paths.csv, csv_text(tidy_rows(report)))
    atomic_write(paths.markdown, markdown(report))
    written = [paths.json, paths.csv, paths.markdown, paths.predictions]
    try:
        png = accuracy_chart([report])
    except Exception as err:  # noqa: BLE001 - a chart is never worth the results
        print(f"eval.py: warning: no chart drawn ({type(err).__name__}: {err})", file=sys.stderr)
        png = None
    if png is not None:
        atomic_write(paths.chart, png)
        written.append(paths.chart)
    atomic_write(paths.json, json.dumps(report, indent=2) + "\n")
    return written


def write_beside(results: pathlib.Path, kind: str, markdown: str, png: bytes, table: dict) -> list[pathlib.Path]:
    """NAME.KIND.md, .png and .json beside an evaluation's NAME.json (sweep, fallback), each whole, JSON last."""
    stem = results.with_suffix("")
    paths = [pathlib.Path(f"{stem}.{kind}.{suffix}") for suffix in ("md", "png", "json")]
    for path, data in zip(paths, (markdown, png, json.dumps(table, indent=1, default=str))):
        atomic_write(path, data)
    return paths

