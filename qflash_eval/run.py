"""One evaluation run: the model in every mode, the data, the loop, the gather, the report and its files."""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import pathlib

import torch

from . import outputs, report
from .attention_swap import calibrate_static, swap_attention
from .data import make_loader, open_source
from .evaluate import ModeModel, evaluate
from .gather import check_complete, gather_outcome, leave_together
from .graphs import GraphedForward
from .models import create_model
from .modes import MODES, AttentionConfig, parse_modes
from .provenance import device_name
from .transforms import describe, eval_data_config, eval_transform

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


def run(args: argparse.Namespace) -> int:
    from accelerate import Accelerator

    modes = parse_modes(args.mode, with_reference=not args.no_fp16_reference)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is visible")
    if args.cuda_graphs and (args.device == "cpu" or not torch.cuda.is_available()):
        raise RuntimeError("--cuda-graphs needs a CUDA device; this run is on the CPU")
    accelerator = Accelerator(cpu=args.device == "cpu")
    device = accelerator.device

    loaded = create_model(args.model, args.weights)
    source = open_source(args.data, args.split, args.num_samples)
    data_config = eval_data_config(loaded.model)
    transform = eval_transform(data_config)
    mode_models = build_mode_models(loaded.model, modes, args, device)
    del loaded.model

    calibration = None
    if args.granularity == "static" and any(m.replaced for m in mode_models):
        calibration = calibrate(mode_models, source, transform, args, device)

    loader = make_loader(source, transform, args.batch_size, args.workers, accelerator.process_index,
                         accelerator.num_processes, pin=device.type == "cuda")
    progress = None
    if accelerator.is_main_process and not args.no_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=source.size, unit="img", desc=f"{args.model} {','.join(modes)}", dynamic_ncols=True)
    outcome, interrupted = evaluate(mode_models, loader, device, progress)
    if progress is not None:
        progress.close()

    gathered = gather_outcome(accelerator, outcome, interrupted, device)
    try:
        if not accelerator.is_main_process:
            return 0
        check_complete(gathered.rows, source.size, gathered.interrupted)
        result = report.build_report(args, loaded, source, mode_models, gathered.rows, gathered.model_seconds,
                                     device, device_name(device), accelerator.num_processes, gathered.interrupted,
                                     calibration, describe(data_config))
        result["timing"] = report.timing(len(gathered.rows), gathered.wall, gathered.data_wait, gathered.first_batch,
                                         gathered.model_seconds, dict(zip(modes, gathered.warmup_seconds)))
        json_path = pathlib.Path(args.results) if args.results else default_results_path(args.model)
        files = outputs.write_outputs(result, json_path, gathered.rows)
        print(report.markdown(result))
        print("written: " + ", ".join(str(f) for f in files))
        return 130 if gathered.interrupted else 0
    finally:
        leave_together(accelerator, device)


def calibrate(mode_models, source, transform, args, device) -> dict:
    """Static granularity: per-layer amax of Q, K, V over the first --calibration-images images."""
    n = min(args.calibration_images, source.size or args.calibration_images)
    loader = make_loader(source, transform, args.batch_size, 0)
    batches, taken = [], 0
    for images, _, _ in loader:
        batches.append(images)
        taken += images.shape[0]
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
