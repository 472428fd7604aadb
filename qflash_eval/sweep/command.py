"""`eval.py sweep -m MODEL --data DATA --mode "qflash(p_bits=4..14)"`: every setting of one knob evaluated on
the same images in one pass (an ordinary evaluation, whose results files are written too), the attention's
SQNR on the first layers' own q/k/v for each setting, and a table and chart against the knob."""
from __future__ import annotations

import argparse
import pathlib
import sys

FIRST_LAYERS = 2  # the SQNR column: mean over the heads of these first attention layers
SQNR_IMAGES = 8


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eval.py sweep",
        description="Sweep one knob of an integer arithmetic: agreement with fp16, Top-1 with its 95 % interval and "
                    "the attention's SQNR on the first layers, per setting, on the same images.")
    p.add_argument("-m", "--model", required=True, help="alias, paper label or timm name (as for an evaluation)")
    p.add_argument("--weights", "--checkpoint", default=None, help="local checkpoint, or 'random'")
    p.add_argument("--data", required=True, help="folder, parquet or hub dataset, as for an evaluation")
    p.add_argument("--mode", required=True, help='one mode with one knob as a range: "qflash(p_bits=4..14)"')
    p.add_argument("-n", "--num-samples", type=int, default=None, help="images, evenly spaced (default all)")
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.add_argument("-j", "--workers", type=int, default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--results", default=None, help="NAME.json (default results/sweep-MODEL-TIME.json); the "
                   "sweep table is NAME.sweep.json / .sweep.md / .sweep.png beside the evaluation's files")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str]) -> int:
    from ..variants import KNOBS, expand_ranges, parse_knobs

    args = parser().parse_args(argv)
    try:
        settings = expand_ranges(args.mode)
        if len(settings) < 2:
            raise ValueError(f"--mode {args.mode!r} sweeps nothing: give one knob as a range, as qflash(p_bits=4..14)")
        base, first = parse_knobs(settings[0])
        knob = next(k for k in first if parse_knobs(settings[1])[1].get(k) != first[k])
        results = pathlib.Path(args.results or _default_results(args.model))
    except ValueError as err:
        print(f"eval.py sweep: error: {err}", file=sys.stderr)
        return 2
    from ..cli import eval_main

    eval_argv = ["--model", args.model, "--data", args.data, "--mode", ",".join(settings), "-b", str(args.batch_size),
                 "--device", args.device, "--results", str(results)]
    for flag, value in (("--weights", args.weights), ("--num-samples", args.num_samples), ("-j", args.workers)):
        if value is not None:
            eval_argv += [flag, str(value)]
    eval_argv += ["--overwrite"] * args.overwrite + ["--no-progress"] * args.no_progress
    code = eval_main(eval_argv)
    if not results.exists():
        return code or 1
    from .table import sweep_table, write

    sqnr = first_layers_sqnr(args, settings)
    table = sweep_table(results, settings, base, knob, KNOBS[base][knob][0], sqnr, FIRST_LAYERS)
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

    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    loaded = create_model(args.model, args.weights)
    source = open_source(args.data, "validation", SQNR_IMAGES)
    loader = make_loader(source, eval_transform(eval_data_config(loaded.model)), SQNR_IMAGES, 0)
    diagnosis = Diagnosis(loaded.model, settings, "sample", torch.float16, device, "auto")
    for batch in loader:
        if batch.images is not None:
            diagnosis.add_batch(batch.images)
    summary = diagnosis.summary()
    return {s: sum(sum(layer["sqnr_db"]) / len(layer["sqnr_db"]) for layer in summary[s]["layers"][:FIRST_LAYERS])
            / min(FIRST_LAYERS, len(summary[s]["layers"])) for s in settings}


def _default_results(model: str) -> str:
    import datetime

    return f"results/sweep-{model}-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
