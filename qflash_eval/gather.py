"""Bringing every process's per-image outcomes and timings to the main process, with consistency checks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .outcome import ImageOutcome


@dataclass
class Gathered:
    rows: list[ImageOutcome]  # every image of every process
    model_seconds: list  # per mode, the slowest process's
    warmup_seconds: list  # per mode, the slowest process's
    wall: float
    data_wait: float
    first_batch: float
    interrupted: bool  # any process was
    batch_sizes: dict  # images per batch -> batches, over all processes
    unusable: list  # (index, name, reason) of every item that could not be used, sorted
    stopped: list  # why a process stopped early (an unusable item, a data-loader failure), one line each


def gather_outcome(accelerator, outcome, interrupted: bool, device) -> Gathered:
    """All processes call this together; the slowest process's time counts for each figure."""
    from accelerate.utils import gather_object

    modes = len(outcome.modes)
    multi = accelerator.num_processes > 1
    rows = gather_object(outcome.rows()) if multi else outcome.rows()
    sizes = outcome.batch_sizes()
    unusable, stopped = outcome.unusable, [outcome.stopped] if outcome.stopped else []
    if multi:
        sizes, unusable, stopped = gather_object(sizes), gather_object(unusable), gather_object(stopped)
    counts: dict = {}
    for n in sizes:
        counts[n] = counts.get(n, 0) + 1
    seconds = torch.cat([outcome.seconds, outcome.warmup_seconds, torch.tensor(
        [outcome.wall_seconds, outcome.data_wait_seconds, outcome.first_batch_seconds], dtype=torch.float64)])
    if multi:
        seconds = accelerator.reduce(seconds.to(device), reduction="max")
        interrupted = bool(gather_object([interrupted]).count(True))
    seconds = seconds.cpu().tolist()
    wall, data_wait, first_batch = seconds[2 * modes:]
    return Gathered(rows, seconds[:modes], seconds[modes:2 * modes], wall, data_wait, first_batch, interrupted,
                    dict(sorted(counts.items())), sorted(unusable), stopped)


def check_complete(rows: list[ImageOutcome], expected: Optional[int], ended_early: bool, unusable: int = 0) -> None:
    """Every image exactly once, and all of them (less the skipped ones) unless the run ended early."""
    indices = [r.index for r in rows]
    if len(set(indices)) != len(indices):
        raise RuntimeError("an image was evaluated twice across processes: data sharding is broken")
    if not ended_early and expected is not None and len(rows) + unusable != expected:
        raise RuntimeError(f"evaluated {len(rows)} images and skipped {unusable}, but the source holds {expected}")


def leave_together(accelerator, device, close: bool = True) -> None:
    """Every process leaves together, once the report is written (or has failed), and closes the process
    group itself: a process that exited with it open aborted in its teardown (gloo on CPU, under load).
    CPU runs call torch's barrier: accelerate's names a CUDA device a CPU host may not have."""
    if accelerator.num_processes <= 1:
        return
    if device.type == "cpu":
        torch.distributed.barrier()
    else:
        accelerator.wait_for_everyone()
    if close:
        torch.distributed.destroy_process_group()
