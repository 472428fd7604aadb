"""`eval.py fallback -m MODEL --data DATA --mode qflash_paper [--target-agreement 99.5 | --max-float-layers K]`:
rank the mode's attention layers on calibration images, add the next-worst layer to the fp16 set until the
mode agrees with fp16 on those images as often as asked, then evaluate every step's configuration on the
evaluation images (never the calibration ones) in one pass, and write a table and a chart."""
from __future__ import annotations

import argparse
import sys

from ..command_args import checked_results, command_device, command_parser

DEFAULT_TARGET = 99.5


def parser() -> argparse.ArgumentParser:
    p = command_parser("fallback", "The fewest attention layers to keep in fp16 for an integer mode to agree with "
                       "fp16: layers ranked by diagnose on calibration images, added worst first, each step evaluated.",
                       "a folder or parquet files (calibration images are set apart)",
                       "one integer mode (a variant or a knob setting too)",
                       "evaluated images, evenly spaced (default: half the source; the rest can calibrate)")
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--target-agreement", type=float, default=None,
                      help=f"agreement with fp16 on the calibration images, %% (default {DEFAULT_TARGET})")
    goal.add_argument("--max-float-layers", type=int, default=None, help="add layers up to this many")
    p.add_argument("--calibration-images", type=int, default=64, help="images that rank the layers (not evaluated)")
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"eval.py fallback: error: {err}", file=sys.stderr)
        return 2


def run(args) -> int:
    import torch

    from ..data import open_source
    from ..models import create_model
    from ..modes import MODES, parse_modes
    from ..transforms import eval_data_config, eval_transform
    from .calibration import calibration_images
    from .rank import rank_layers
    from .table import fallback_table, write

    names = parse_modes(args.mode, with_reference=False)
    if len(names) != 1 or not MODES[names[0]].is_integer:
        raise ValueError(f"--mode {args.mode!r}: give one integer mode")
    mode = names[0]
    if args.calibration_images < 1:
        raise ValueError(f"--calibration-images must be at least 1, got {args.calibration_images}")
    results = checked_results(args.results or _default_results(args.model), args.overwrite)
    num_samples = args.num_samples
    if num_samples is None:
        size = open_source(args.data, "validation", None).size
        num_samples = max(1, (size or 2) // 2)
    device = command_device(args.device)
    dtype = getattr(torch, args.dtype)
    loaded = create_model(args.model, args.weights)
    images, positions = calibration_images(args.data, "validation", num_samples, args.calibration_images,
                                           eval_transform(eval_data_config(loaded.model)))
    ranking = rank_layers(loaded.model, mode, images, dtype, device, args.qflash_backend, batch_size=args.batch_size)
    print(f"{mode}: layers worst first (mean SQNR dB on {len(positions)} calibration images): "
          + ", ".join(f"{i} ({s:.1f})" for i, s in ranking), flush=True)
    steps = search(loaded.model, mode, ranking, images, dtype, device, args)
    from ..suite import evaluate_settings

    code = evaluate_settings({"model": args.model, "data": args.data, "mode": ",".join(s["mode"] for s in steps),
                              "num_samples": num_samples, "batch_size": args.batch_size, "dtype": args.dtype,
                              "device": args.device, "qflash_backend": args.qflash_backend, "results": str(results),
                              "weights": args.weights, "overwrite": args.overwrite, "no_progress": args.no_progress},
                             "eval.py fallback")
    if not results.exists():
        return code or 1
    speeds = None
    if device.type == "cuda":  # images/s of every step measured alike (the evaluation's few batches are no speed)
        from .speed import images_per_second

        speeds = images_per_second(loaded.model, ["fp16"] + [s["mode"] for s in steps], args.batch_size,
                                   eval_data_config(loaded.model)["input_size"], dtype, device, args.qflash_backend)
    table = fallback_table(results, mode, ranking, steps, positions, target=args.target_agreement,
                           max_layers=args.max_float_layers, speeds=speeds, batch=args.batch_size)
    for path in write(table, results):
        print(f"written: {path}")
    return code


def search(base_model, mode: str, ranking, images, dtype, device, args) -> list[dict]:
    """Steps 0, 1, ...: the k worst layers in fp16 and the agreement with fp16 on the calibration images, until
    the target holds (or --max-float-layers is reached, or every layer is in fp16)."""
    from ..variants import float_layers_name

    target = None  # --max-float-layers: every step up to it
    if args.max_float_layers is None:
        target = DEFAULT_TARGET if args.target_agreement is None else args.target_agreement
    limit = len(ranking) if args.max_float_layers is None else min(args.max_float_layers, len(ranking))
    reference = _predictions(base_model, "fp16", images, dtype, device, args)
    steps = []
    for k in range(limit + 1):
        layers = sorted(i for i, _ in ranking[:k])
        name = mode if k == 0 else float_layers_name(mode, layers)
        agreement = 100.0 * float((_predictions(base_model, name, images, dtype, device, args) == reference)
                                  .float().mean())
        steps.append({"float_layers": layers, "mode": name, "calibration_agreement": round(agreement, 2)})
        print(f"  {len(layers)} in fp16 {layers}: agreement {agreement:.2f} % on the calibration images", flush=True)
        if target is not None and agreement >= target:
            break
    return steps


def _predictions(base_model, name: str, images, dtype, device, args):
    import torch

    from .speed import configured_model

    model = configured_model(base_model, name, dtype, device, args.qflash_backend)
    with torch.inference_mode():
        return torch.cat([model(chunk.to(device, next(model.parameters()).dtype)).argmax(1).cpu()
                          for chunk in images.split(args.batch_size)])


def _default_results(model: str) -> str:
    import datetime

    return f"results/fallback-{model}-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
