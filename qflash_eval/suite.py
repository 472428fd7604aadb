"""The models of a run: one (run.run_one), or several in turn (`--model paper`, or a comma list), each
model's results written as it finishes, models whose weights cannot be had reported and passed over, and
one combined table, CSV and chart."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pathlib
import sys

from . import outputs
from .compare import compare_reports
from .config import expand_models, resolve_model_name
from .data import DataError
from .hub import HubUnavailableError
from .models import RANDOM_WEIGHTS
from .report import SCHEMA_VERSION
from .run import run_one
from .run_config import RunConfig
from .signals import held


def evaluate_models(config: RunConfig) -> int:
    """Evaluate config.model (with its results files), or several models in turn; returns the exit code."""
    names = expand_models(config.model)
    if len(names) > 1:
        return run_suite(config, names)
    _, alias = resolve_model_name(names[0])  # a paper label (DeiT-T) is reported by its alias
    return run_one(dataclasses.replace(config, model=alias.alias if alias else names[0]))[0]


def suite_folder(config: RunConfig) -> pathlib.Path:
    if config.results:
        folder = pathlib.Path(config.results).expanduser()
        if folder.suffix:
            raise ValueError(f"with several models --results names a folder (one file set per model), not {folder}")
        return folder
    return pathlib.Path("results") / f"{config.model.replace(',', '+')}-{dt.datetime.now():%Y%m%d-%H%M%S}"


def run_suite(config: RunConfig, names: list[str]) -> int:
    if config.weights and config.weights != RANDOM_WEIGHTS:
        raise ValueError("--weights names one file but several models were asked for: pass --weights-dir "
                         "with files named by alias or timm name")
    if config.resume:
        raise ValueError("--resume continues one model's run: pass that model's results file")
    folder = suite_folder(config)
    combined = outputs.ResultPaths.beside(folder / "combined.json")
    per_model = {name: outputs.ResultPaths.beside(folder / f"{name}.json") for name in names}
    for paths in [combined, *per_model.values()]:
        outputs.check_writable(paths, config.overwrite)
    reports, unavailable, code = {}, {}, 0
    for i, name in enumerate(names):
        one = dataclasses.replace(config, model=name, results=str(per_model[name].json))
        print(f"[{i + 1}/{len(names)}] {name}", file=sys.stderr)
        try:
            code, report = run_one(one, close_group=i == len(names) - 1)
        except DataError:
            raise  # the same data for every model: nothing else would run either
        except (HubUnavailableError, FileNotFoundError, ValueError, RuntimeError) as err:
            unavailable[name] = str(err)
            print(f"eval.py: {name}: not evaluated: {err}", file=sys.stderr)
            continue
        if report is not None:
            reports[name] = report
        if code not in (0,):
            break  # interrupted or stopped: the finished models are written below
    if not reports and not unavailable:
        return code
    with held():
        write_combined(combined, names, reports, unavailable, per_model)
    return code if reports else 2


def write_combined(paths: outputs.ResultPaths, names, reports: dict, unavailable: dict, per_model: dict) -> None:
    from .charts import accuracy_chart

    table = compare_reports(list(reports.items()))
    missing = [n for n in names if n not in reports]
    notes = "".join(f"\n- {n}: {unavailable.get(n, 'not run (the suite stopped before it)')}" for n in missing)
    text = table + (f"\n\nNot evaluated:{notes}\n" if missing else "\n")
    outputs.atomic_write(paths.markdown, text)
    outputs.atomic_write(paths.csv, outputs.csv_text([row for r in reports.values() for row in outputs.tidy_rows(r)]))
    png = accuracy_chart(list(reports.values()), list(reports))
    if png is not None:
        outputs.atomic_write(paths.chart, png)
    outputs.atomic_write(paths.json, json.dumps({
        "schema_version": SCHEMA_VERSION, "kind": "suite", "models": names,
        "evaluated": {n: str(per_model[n].json) for n in reports},
        "not_evaluated": {n: unavailable.get(n, "not run") for n in missing},
        "rows": [row for r in reports.values() for row in outputs.tidy_rows(r)],
    }, indent=2) + "\n")
    print(text)
    print("written: " + ", ".join(str(p) for p in (paths.json, paths.csv, paths.markdown, paths.chart)))


def evaluate_settings(settings: dict, where: str) -> int:
    """An evaluation with these RunConfig settings (field name -> value): what `eval.py` runs, for the
    commands that build on one (sweep, fallback). Errors are raised, not printed."""
    from .run_config import RunConfig

    return evaluate_models(RunConfig().overlay(settings, where))
