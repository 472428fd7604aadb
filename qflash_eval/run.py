"""One model's evaluation run: prepare (checks, data, the model in every mode) -> evaluate (one pass over
the data) -> finish (gather, merge a resumed run, report, files)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pathlib
import sys
import time
from typing import Optional

import torch

from . import outputs, report
from .attention_swap import calibrate_static, mode_copy
from .data import DataError, make_loader, open_source
from .evaluate import ModeModel, evaluate
from .fallback import resolve_auto_float_layers
from .gather import check_complete, gather_outcome, leave_together
from .graphs import GraphedForward
from .labels import check_label_space, check_real_labels_apply, load_class_map, valid_labels_for
from .models import RANDOM_WEIGHTS, LoadedModel, check_model_name, check_weights_file, create_model
from .modes import MODES, AttentionConfig, parse_modes, with_float_layers
from .prepared import PreparedRun
from .provenance import device_name
from .resume import load_prior
from .run_config import RunConfig
from .signals import StopSignals, held
from .transforms import describe, eval_data_config, eval_transform

EXIT_STOPPED = 1  # the run ended early on bad data; the finished part was written


def run_one(config: RunConfig, loaded: Optional[LoadedModel] = None, write: bool = True,
            close_group: bool = True) -> tuple[int, Optional[dict]]:
    """Evaluate config.model (one model) in every mode. Returns (exit code, report; None on other processes).
    `loaded`: a model already built (the Python API); write: the results files; close_group: end the
    multi-process group afterwards (a suite keeps it for its next model)."""
    config.check()
    modes = with_float_layers(parse_modes(config.mode, with_reference=not config.no_fp16_reference),
                              config.float_layers)
    paths = check_before_loading(config, write, building=loaded is None)
    with StopSignals() as signals:
        started = time.perf_counter()
        run = prepare(config, modes, paths, loaded)
        run.prepare_seconds = time.perf_counter() - started
        outcome, interrupted = evaluate_run(run)
    gathered = gather_outcome(run.accelerator, outcome, interrupted, run.device)
    try:
        if not run.accelerator.is_main_process:
            return 0, None
        return finish(run, gathered, signals)
    finally:
        leave_together(run.accelerator, run.device, close_group)


def check_before_loading(config: RunConfig, write: bool, building: bool) -> Optional[outputs.ResultPaths]:
    """What can fail cheaply fails before anything is loaded: results paths, device, model name, weights file."""
    paths = None
    if write:
        paths = outputs.result_paths(config.results or str(default_results_path(config.model)), config.results_format)
        outputs.check_writable(paths, config.overwrite, pathlib.Path(config.resume) if config.resume else None)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is visible")
    if config.cuda_graphs and (config.device == "cpu" or not torch.cuda.is_available()):
        raise RuntimeError("--cuda-graphs needs a CUDA device; this run is on the CPU")
    if building:
        check_model_name(config.model)
        if config.weights and config.weights != RANDOM_WEIGHTS:
            check_weights_file(pathlib.Path(config.weights).expanduser())
    return paths


def prepare(config: RunConfig, modes: list[str], paths, loaded: Optional[LoadedModel]) -> PreparedRun:
    """Devices, the data source (cheap, before the model), the run resumed, the model, a copy per mode."""
    from accelerate import Accelerator

    steps, last = {}, [time.perf_counter()]

    def lap(step: str):  # seconds of each step, for the report's timing
        now = time.perf_counter()
        steps[step], last[0] = round(now - last[0], 3), now

    accelerator = Accelerator(cpu=config.device == "cpu")
    workers = config.workers if config.workers is not None else default_workers(accelerator.num_processes)
    lap("devices_s")
    class_map = load_class_map(config.class_map) if config.class_map else None
    source = open_source(config.data, config.split, config.num_samples, class_map)
    check_real_labels_apply(config.real_labels, source)
    valid_labels = valid_labels_for(config.valid_labels, source)
    check_label_space(loaded.timm_name if loaded else check_model_name(config.model)[0], source,
                      _classes_of(loaded), class_mapped=class_map is not None)
    prior = load_prior(pathlib.Path(config.resume), modes, source) if config.resume else None
    lap("data_source_s")
    if loaded is None:
        loaded = create_model(config.model, config.weights, config.weights_dir, config.use_ema)
    lap("model_s")
    if prior is not None:
        prior.check_weights(loaded.weights_sha256)
    data_config = eval_data_config(loaded.model)
    device = accelerator.device
    if config.cuda_graphs is None:  # on by default where they can run: the same predictions, less host time
        config = dataclasses.replace(config, cuda_graphs=device.type == "cuda")
    modes, float_layers = resolve_auto_float_layers(modes, config, loaded.model, device)
    if float_layers:
        lap("float_layers_s")
    mode_models = build_mode_models(loaded.model, modes, config, device)
    loaded.model = None  # the mode copies are what runs
    lap("mode_copies_s")
    run = PreparedRun(config, modes, paths, accelerator, device, workers, source, prior, loaded,
                      data_config, mode_models, prepare_steps=steps, float_layers=float_layers or None,
                      valid_labels=valid_labels)
    if config.granularity == "static" and any(m.replaced for m in mode_models):
        run.calibration = calibrate(run)
        lap("calibration_s")
    return run


def _classes_of(loaded: Optional[LoadedModel]) -> Optional[int]:
    return getattr(loaded.model, "num_classes", None) if loaded is not None else None


def build_mode_models(base_model, modes: list[str], config: RunConfig, device) -> list[ModeModel]:
    """A copy of the model per mode, attention swapped, in the mode's dtype, on the device."""
    mode_models = []
    for name in modes:
        attention = AttentionConfig(name, config.granularity, config.ivit_bits, config.qflash_backend)
        dtype = MODES[name].dtype(config.dtype)
        model, replaced = mode_copy(base_model, attention, dtype, device)
        graphed = GraphedForward(model) if config.cuda_graphs else None
        mode_models.append(ModeModel(name, model, dtype, replaced, graphed, attention))
    return mode_models


def evaluate_run(run: PreparedRun):
    """Every mode on every batch not yet done, with a progress bar on the main process."""
    config = run.config
    done = run.prior.done() if run.prior is not None else set()
    loader = make_loader(run.source, eval_transform(run.data_config), config.batch_size, run.workers,
                         run.accelerator.process_index, run.accelerator.num_processes, pin=run.device.type == "cuda",
                         skip=done.__contains__ if done else None)
    progress = None
    if run.accelerator.is_main_process and not config.no_progress:
        from tqdm.auto import tqdm

        total = None if run.source.size is None else run.source.size - len(done)
        progress = tqdm(total=total, unit="img", desc=f"{config.model} {','.join(run.modes)}", dynamic_ncols=True)
    try:
        return evaluate(run.mode_models, loader, run.device, progress, skip_unusable=config.skip_unreadable,
                        classes=run.valid_labels["indices"] if run.valid_labels else None)
    finally:
        if progress is not None:
            progress.close()


def finish(run: PreparedRun, gathered, signals: StopSignals) -> tuple[int, dict]:
    """The resumed run merged in, completeness checked, the report built and written."""
    this_part = (len(gathered.rows), list(gathered.model_seconds))
    if run.prior is not None:
        run.prior.merge_into(gathered, run.modes)
    ended_early = gathered.interrupted or bool(gathered.stopped)
    check_complete(gathered.rows, run.source.size, ended_early, len(gathered.unusable))
    result = report.build_report(run, gathered, device_name(run.device), describe(run.data_config),
                                 signals.received or "SIGINT")
    result["timing"] = report.timing(this_part[0], gathered.wall, gathered.data_wait, gathered.first_batch,
                                     this_part[1], dict(zip(run.modes, gathered.warmup_seconds)),
                                     run.prepare_seconds, run.prepare_steps)
    if run.paths is not None:
        with held():  # a Ctrl-C now waits until every file, the JSON last, is written
            files = outputs.write_outputs(result, run.paths, gathered.rows)
        print(report.markdown(result))
        print("written: " + ", ".join(str(f) for f in files))
    for reason in gathered.stopped:
        print(f"eval.py: stopped early: {reason}", file=sys.stderr)
    if gathered.interrupted:
        return signals.exit_code(), result
    return (EXIT_STOPPED if gathered.stopped else 0), result


def default_workers(processes: int) -> int:
    """Decode workers per process: the cores this process may use, less one for the model, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores // max(processes, 1) - 1))


def calibrate(run: PreparedRun) -> dict:
    """Static granularity: per-layer amax of Q, K, V over the first --calibration-images images."""
    config, source = run.config, run.source
    n = min(config.calibration_images, source.size or config.calibration_images)
    loader = make_loader(source, eval_transform(run.data_config), config.batch_size, 0)
    batches, taken = [], 0
    for batch in loader:
        if batch.failures:
            raise DataError(f"calibration: {batch.failures[0][2]}")
        batches.append(batch.images)
        taken += batch.images.shape[0]
        if taken >= n:
            break
    images = torch.cat(batches)[:n].to(run.device)
    for m in run.mode_models:
        if m.replaced:
            calibrate_static(m.model, images.to(m.dtype).split(config.batch_size))
    return {"images": int(images.shape[0]), "source": "the first images of the evaluation data"}


def default_results_path(model: str) -> pathlib.Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("results") / f"{model}-{stamp}.json"
