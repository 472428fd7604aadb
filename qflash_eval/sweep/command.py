"""`eval.py sweep -m MODEL --data DATA --mode "qflash(p_bits=4..14)"`: every setting of one knob evaluated on
the same images in one pass (an ordinary evaluation, whose results files are written too), the attention's
SQNR on the first layers' own q/k/v for each setting, and a table and chart against the knob."""
from __future__ import annotations

import argparse
import sys

from ..command_args import checked_results, command_device, command_parser

FIRST_LAYERS = 2  # the SQNR column: mean over the heads of these first attention layers
SQNR_IMAGES = 8


def parser() -> argparse.ArgumentParser:
    p = command_parser("sweep", "Sweep one knob of an integer arithmetic: agreement with fp16, Top-1 with its 95 % "
                       "interval and the attention's SQNR on the first layers, per setting, on the same images.",
                       "folder, parquet or hub dataset, as for an evaluation",
                       'one mode with one knob as a range: "qflash(p_bits=4..14)"', "images, evenly spaced (default all)")
    p.add_argument("-j", "--workers", type=int, default=None)
    return p


def main(argv: list[str]) -> int:
    from ..variants import KNOBS, expand_ranges, parse_knobs

    args = parser().parse_args(argv)
    try:
        points = expand_ranges(args.mode)
        if len(points) < 2:
            raise ValueError(f"--mode {args.mode!r} sweeps nothing: give one knob as a range, as qflash(p_bits=4..14)")
        base, first = parse_knobs(points[0])
        knob = next(k for k in first if parse_knobs(points[1])[1].get(k) != first[k])
        results = checked_results(args.results or _default_results(args.model), args.overwrite)
    except ValueError as err:
        print(f"eval.py sweep: error: {err}", file=sys.stderr)
        return 2
    from ..suite import evaluate_settings

    settings = {"model": args.model, "data": args.data, "mode": ",".join(points), "batch_size": args.batch_size,
                "device": args.device, "results": str(results), "weights": args.weights,
                "num_samples": args.num_samples, "workers": args.workers, "overwrite": args.overwrite,
                "qflash_backend": args.qflash_backend,
                "no_progress": args.no_progress}
    try:
        code = evaluate_settings(settings, "eval.py sweep")
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"eval.py sweep: error: {err}", file=sys.stderr)
        return 2
    if not results.exists():
        return code or 1
    from .table import sweep_table, write

    sqnr = first_layers_sqnr(args, points)
    table = sweep_table(results, points, base, knob, KNOBS[base][knob][0], sqnr, FIRST_LAYERS)
    for path in write(table, results):
        print(f"written: {path}")
    return code


def first_layers_sqnr(args, settings: list[str]) -> dict:
    """{setting: mean SQNR (dB) over the heads of the first FIRST_LAYERS attention layers} on SQNR_IMAGES
    images, each setting on the fp16 model's own q/k/v (diagnose's measure)."""
    import torch

    from ..data import open_source
    from ..data.loader import make_loader
    from ..diagnose.measure import Diagnosis
    from ..models import create_model
    from ..transforms import eval_data_config, eval_transform

    device = command_device(args.device)
    loaded = create_model(args.model, args.weights)
    source = open_source(args.data, "validation", SQNR_IMAGES)
    loader = make_loader(source, eval_transform(eval_data_config(loaded.model)), SQNR_IMAGES, 0)
    diagnosis = Diagnosis(loaded.model, settings, "sample", torch.float16, device, args.qflash_backend)
    for batch in loader:
        if batch.images is not None:
            diagnosis.add_batch(batch.images)
    summary = diagnosis.summary()
    return {s: sum(sum(layer["sqnr_db"]) / len(layer["sqnr_db"]) for layer in summary[s]["layers"][:FIRST_LAYERS])
            / min(FIRST_LAYERS, len(summary[s]["layers"])) for s in settings}


def _default_results(model: str) -> str:
    import datetime

    return f"results/sweep-{model}-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
