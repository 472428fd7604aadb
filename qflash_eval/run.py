"""One evaluation run: the model in every mode, the data, the loop, the gather, the report and its files."""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import pathlib
import sys
from typing import Optional

import torch

from . import outputs, report
from .attention_swap import calibrate_static, swap_attention
from .data import DataError, make_loader, open_source
from .evaluate import ModeModel, evaluate
from .gather import check_complete, gather_outcome, leave_together
from .graphs import GraphedForward
from .models import RANDOM_WEIGHTS, LoadedModel, check_model_name, check_weights_file, create_model
from .modes import MODES, AttentionConfig, parse_modes
from .provenance import device_name
from .signals import StopSignals
from .transforms import describe, eval_data_config, eval_transform

EXIT_STOPPED = 1  # the run ended early on bad data; the finished part was written


def build_mode_models(base_model, modes: list[str], args, device) -> list[ModeModel]:
    """A copy of the model per mode, attention swapped, in the mode's dtype, on the device."""
    mode_models = []
    for name in modes:
        model = copy.deepcopy(base_model)
        config = AttentionConfig(name, args.granularity, args.ivit_bits, args.qflash_backend)
        replaced = swap_attention(model, config)
        dtype = MODES[name].dtype(args.dtype)
        model = model.to(device=device, dtype=dtype).eval()
        graphed = GraphedForward(model) if args.cuda_graphs else None
        mode_models.append(ModeModel(name, model, dtype, replaced, graphed, config))
    return mode_models


def check_args(args: argparse.Namespace) -> None:
    """Numbers that make no sense fail here, with the flag's name, before anything is loaded."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1 (got {args.batch_size})")
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be 0 or more (got {args.workers})")
    if args.granularity == "static" and args.calibration_images < 1:
        raise ValueError(f"--granularity static needs --calibration-images >= 1 (got {args.calibration_images})")
    if not 2 <= args.ivit_bits <= 16:
        raise ValueError(f"--ivit-bits must be 2-16 (got {args.ivit_bits})")


def default_workers(processes: int) -> int:
    """Decode workers per process: the cores this process may use, less one for the model, at most 8."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores // max(processes, 1) - 1))


def run(args: argparse.Namespace) -> int:
    """Evaluate args.model (with its results files), or several models in turn (--model paper, a list)."""
    from .config import expand_models

    names = expand_models(args.model)
    if len(names) > 1:
        from .suite import run_suite

        return run_suite(args, names)
    from .config import resolve_model_name

    _, alias = resolve_model_name(names[0])
    args.model = alias.alias if alias else names[0]  # a paper label (DeiT-T) is reported by its alias
    return run_one(args)[0]


def run_one(args: argparse.Namespace, loaded: Optional[LoadedModel] = None, write: bool = True,
            close_group: bool = True):
    """Returns (exit code, report or None). `loaded`: a model already built (the Python API); close_group:
    end the multi-process group afterwards (a suite keeps it for its next model)."""
    from accelerate import Accelerator

    check_args(args)
    modes = parse_modes(args.mode, with_reference=not args.no_fp16_reference)
    paths = None
    if write:
        paths = outputs.result_paths(args.results or str(default_results_path(args.model)), args.results_format)
        outputs.check_writable(paths, args.overwrite, pathlib.Path(args.resume) if args.resume else None)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is visible")
    if args.cuda_graphs and (args.device == "cpu" or not torch.cuda.is_available()):
        raise RuntimeError("--cuda-graphs needs a CUDA device; this run is on the CPU")
    if loaded is None:
        check_model_name(args.model)
        if args.weights and args.weights != RANDOM_WEIGHTS:
            check_weights_file(pathlib.Path(args.weights).expanduser())

    with StopSignals() as signals:
        accelerator = Accelerator(cpu=args.device == "cpu")
        device = accelerator.device
        if args.workers is None:
            args.workers = default_workers(accelerator.num_processes)
        source = open_source(args.data, args.split, args.num_samples)  # cheap: before the model
        prior_rows, prior = [], None
        if args.resume:
            prior, prior_rows = load_prior(pathlib.Path(args.resume), modes, source)
        if loaded is None:
            loaded = create_model(args.model, args.weights, args.weights_dir, args.use_ema)
        if prior is not None and prior.get("weights_sha256") != loaded.weights_sha256:
            raise ValueError(f"--resume {args.resume}: its weights ({prior.get('weights')}) differ from these")
        data_config = eval_data_config(loaded.model)
        transform = eval_transform(data_config)
        mode_models = build_mode_models(loaded.model, modes, args, device)
        loaded.model = None  # the mode copies are what runs

        calibration = None
        if args.granularity == "static" and any(m.replaced for m in mode_models):
            calibration = calibrate(mode_models, source, transform, args, device)

        done = {r[0] for r in prior_rows}
        loader = make_loader(source, transform, args.batch_size, args.workers, accelerator.process_index,
                             accelerator.num_processes, pin=device.type == "cuda",
                             skip=done.__contains__ if done else None)
        progress = None
        if accelerator.is_main_process and not args.no_progress:
            from tqdm.auto import tqdm

            total = None if source.size is None else source.size - len(done)
            progress = tqdm(total=total, unit="img", desc=f"{args.model} {','.join(modes)}", dynamic_ncols=True)
        outcome, interrupted = evaluate(mode_models, loader, device, progress,
                                        skip_unusable=args.skip_unreadable)
        if progress is not None:
            progress.close()

    gathered = gather_outcome(accelerator, outcome, interrupted, device)
    try:
        if not accelerator.is_main_process:
            return 0, None
        this_part = (len(gathered.rows), list(gathered.model_seconds))
        if prior_rows:
            gathered.rows = merge_rows(prior_rows, gathered.rows)
            gathered.model_seconds = [s + prior["results"][m].get("model_seconds", 0.0)
                                      for s, m in zip(gathered.model_seconds, modes)]
            for size, count in prior.get("batch_sizes_run", {}).items():
                gathered.batch_sizes[int(size)] = gathered.batch_sizes.get(int(size), 0) + count
        ended_early = gathered.interrupted or bool(gathered.stopped)
        check_complete(gathered.rows, source.size, ended_early, len(gathered.unusable))
        resumed = None if prior is None else {"path": str(args.resume), "images_before": len(prior_rows)}
        result = report.build_report(args, loaded, source, mode_models, gathered, device, device_name(device),
                                     accelerator.num_processes, calibration, describe(data_config),
                                     signals.received or "SIGINT", resumed)
        result["timing"] = report.timing(this_part[0], gathered.wall, gathered.data_wait, gathered.first_batch,
                                         this_part[1],
                                         dict(zip(modes, gathered.warmup_seconds)))
        if write:
            files = outputs.write_outputs(result, paths, gathered.rows)
            print(report.markdown(result))
            print("written: " + ", ".join(str(f) for f in files))
        for reason in gathered.stopped:
            print(f"eval.py: stopped early: {reason}", file=sys.stderr)
        if gathered.interrupted:
            return signals.exit_code(), result
        return (EXIT_STOPPED if gathered.stopped else 0), result
    finally:
        leave_together(accelerator, device, close_group)


def load_prior(path: pathlib.Path, modes: list[str], source) -> tuple[dict, list]:
    """The report and per-image rows of the run that --resume continues, checked against this one."""
    from .compare import read_report

    prior = read_report(path)
    if list(prior["results"]) != modes:
        raise ValueError(f"--resume {path}: it ran modes {', '.join(prior['results'])}, not {', '.join(modes)}")
    if prior["data"].get("expected") != source.size or prior["data"]["source"] != source.describe():
        raise ValueError(f"--resume {path}: it evaluated {prior['data']['source']} "
                         f"({prior['data'].get('expected')} images), not {source.describe()} ({source.size})")
    predictions = outputs.ResultPaths.beside(path).predictions
    if not predictions.is_file():
        raise ValueError(f"--resume {path}: its per-image predictions {predictions} are missing")
    return prior, outputs.read_predictions(predictions, modes)


def merge_rows(prior_rows: list, new_rows: list) -> list:
    """The earlier run's rows, less those evaluated again (a batch re-runs whole), plus this run's."""
    again = {r[0] for r in new_rows}
    return [r for r in prior_rows if r[0] not in again] + new_rows


def calibrate(mode_models, source, transform, args, device) -> dict:
    """Static granularity: per-layer amax of Q, K, V over the first --calibration-images images."""
    n = min(args.calibration_images, source.size or args.calibration_images)
    loader = make_loader(source, transform, args.batch_size, 0)
    batches, taken = [], 0
    for batch in loader:
        if batch.failures:
            raise DataError(f"calibration: {batch.failures[0][2]}")
        batches.append(batch.images)
        taken += batch.images.shape[0]
        if taken >= n:
            break
    images = torch.cat(batches)[:n].to(device)
    for m in mode_models:
        if m.replaced:
            calibrate_static(m.model, images.to(m.dtype).split(args.batch_size))
    return {"images": int(images.shape[0]), "source": "the first images of the evaluation data"}


def default_results_path(model: str) -> pathlib.Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("results") / f"{model}-{stamp}.json"
