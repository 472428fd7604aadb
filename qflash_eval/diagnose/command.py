"""`eval.py diagnose -m MODEL --data DATA --mode qflash,peers -n 64`: the flags, the images, the progress bar."""
from __future__ import annotations

import argparse
import datetime
import pathlib
import sys
from typing import Optional

from ..command_args import command_device
from ..modes import REFERENCE_MODE, parse_modes

DEFAULT_IMAGES = 64


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eval.py diagnose",
        description="Which attention layer and head lose accuracy, per mode: the error of each mode on the fp16 "
                    "model's own q, k, v (SQNR, cosine, KL of the probability rows, probabilities flushed to 0), "
                    "the error of each block's output along the mode's model, and the per-image q/k/v scales.")
    p.add_argument("-m", "--model", required=True, help="alias, paper label or timm name (as for an evaluation)")
    p.add_argument("--weights", "--checkpoint", default=None, help="local checkpoint, or 'random'")
    p.add_argument("--weights-dir", default=None)
    p.add_argument("--data", required=True, help="folder, parquet or hub dataset, as for an evaluation")
    p.add_argument("--split", default="validation")
    p.add_argument("--mode", default="qflash", help="modes to diagnose: a comma list; 'all' and 'peers' in it")
    p.add_argument("-n", "--num-samples", type=int, default=DEFAULT_IMAGES, help="images, evenly spaced")
    p.add_argument("-b", "--batch-size", type=int, default=16)
    p.add_argument("-j", "--workers", type=int, default=2)
    p.add_argument("--granularity", default="sample", choices=("sample", "head", "batch"))
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--qflash-backend", default="auto", choices=("auto", "triton", "reference"),
                   help="the integer modes' kernels: Triton (CUDA, or the interpreter) or the bit-exact reference")
    p.add_argument("--results", default=None, help="NAME.json (default results/diagnose-MODEL-TIME.json)")
    p.add_argument("--overwrite", action="store_true", help="replace existing results files")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        modes = [m for m in parse_modes(args.mode, with_reference=False) if m not in ("fp32", REFERENCE_MODE)]
        if not modes:
            raise ValueError("--mode names no mode to diagnose against fp16")
        if args.num_samples < 1:
            raise ValueError(f"-n must be at least 1, got {args.num_samples}")
        path = results_path(args)
        return run(args, modes, path, argv)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"eval.py diagnose: error: {err}", file=sys.stderr)
        return 2


def results_path(args) -> pathlib.Path:
    """--results, checked before anything is loaded: a .json name whose files are not there (or --overwrite)."""
    path = pathlib.Path(args.results or f"results/diagnose-{args.model}-{datetime.datetime.now():%Y%m%d-%H%M%S}.json")
    if path.suffix != ".json":
        raise ValueError(f"--results {path} must end in .json (the .md and .png are written beside it)")
    taken = [p for p in (path, path.with_suffix(".md"), path.with_suffix(".png")) if p.exists()]
    if taken and not args.overwrite:
        raise ValueError(f"{taken[0]} exists; pass --overwrite to replace it")
    return path


def run(args, modes: list[str], path: pathlib.Path, argv: list[str]) -> int:
    import torch

    from ..data import open_source
    from ..data.loader import make_loader
    from ..models import create_model
    from ..provenance import provenance
    from ..signals import StopSignals, held
    from ..transforms import eval_data_config, eval_transform
    from .measure import Diagnosis
    from .write import write

    device = command_device(args.device)
    source = open_source(args.data, args.split, args.num_samples)
    loaded = create_model(args.model, args.weights, args.weights_dir)
    diagnosis = Diagnosis(loaded.model, modes, args.granularity, getattr(torch, args.dtype), device,
                          args.qflash_backend)
    loader = make_loader(source, eval_transform(eval_data_config(loaded.model)), args.batch_size, args.workers)
    progress = None
    if not args.no_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=source.size, unit="img", desc=f"diagnose {args.model} {','.join(modes)}")
    interrupted, stopped = False, None
    with StopSignals() as signals:  # Ctrl-C or SIGTERM: the finished batches are diagnosed and written
        try:
            for batch in loader:
                if batch.failures:
                    index, name, reason = batch.failures[0]
                    stopped = f"image {name}: {reason}"
                    break
                diagnosis.add_batch(batch.images)
                if progress is not None:
                    progress.update(batch.images.shape[0])
        except KeyboardInterrupt:
            interrupted = True
    if progress is not None:
        progress.close()
    if diagnosis.images == 0:
        print(f"eval.py diagnose: {stopped or 'interrupted'} before any batch finished; nothing written",
              file=sys.stderr)
        return signals.exit_code() if interrupted else 1
    report = {
        "model": args.model, "timm_name": loaded.timm_name, "weights": loaded.weights,
        "weights_sha256": loaded.weights_sha256, "data": {"source": args.data, "count": diagnosis.images},
        "images": diagnosis.images, "complete": not (interrupted or stopped), "interrupted": interrupted,
        "stopped": stopped, "granularity": args.granularity, "dtype": args.dtype,
        "batch_size": args.batch_size, "backend": args.qflash_backend, "reference_mode": REFERENCE_MODE,
        "layers": diagnosis.layer_names,
        "blocks": diagnosis.block_names, "scales": diagnosis.scales(), "modes": diagnosis.summary(),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "eval.py diagnose " + " ".join(argv),
        "provenance": provenance(torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", 1),
    }
    with held():  # a Ctrl-C now waits until every file, the JSON last, is written
        files = write(report, path)
    from .write import markdown

    print(markdown(report))
    print("written: " + ", ".join(str(f) for f in files))
    if stopped:
        print(f"eval.py diagnose: stopped early: {stopped}", file=sys.stderr)
    return signals.exit_code() if interrupted else (1 if stopped else 0)


