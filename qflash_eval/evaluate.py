"""The evaluation loop: every mode sees the same decoded batches, in one pass over the data."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from .modes import REFERENCE_MODE
from .outcome import ImageOutcome


@dataclass
class ModeModel:
    mode: str
    model: nn.Module
    dtype: torch.dtype
    replaced: int  # attention modules swapped (0 for float modes)
    graphed: Optional[Callable] = None  # graphs.GraphedForward of model, when CUDA graphs are asked for
    config: Optional[object] = None  # the modes.AttentionConfig the model was swapped with

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (self.graphed or self.model)(images.to(self.dtype))

    @property
    def setup_seconds(self) -> float:
        """Time spent capturing CUDA graphs so far (0 without them): warm-up, not model time."""
        return self.graphed.setup_seconds if self.graphed is not None else 0.0


@dataclass
class PerImage:
    """Per-image outcomes, one row per image this process evaluated, and what stopped or was skipped."""

    modes: list[str]
    # one (index, label, top5 (B, modes, 5) predicted classes, names, (B, modes, 3) confidence, log p(label),
    # KL from fp16) per batch, appended in one step so that Ctrl-C never leaves a half-recorded batch
    batches: list[tuple] = field(default_factory=list)
    seconds: Optional[torch.Tensor] = None  # model time per mode
    # wall time of the loop, time blocked waiting for decoded batches (the first wait, which includes
    # starting the decode workers, counted separately)
    wall_seconds: float = 0.0
    data_wait_seconds: float = 0.0
    first_batch_seconds: float = 0.0
    warmup_seconds: Optional[torch.Tensor] = None  # per mode: one untimed pass over the first batch
    unusable: list = field(default_factory=list)  # (index, name, reason) of items that could not be used
    stopped: Optional[str] = None  # why the loop ended before the data did, if it did
    reference: Optional[int] = None  # position of the fp16 mode among the modes (KL is measured from it)

    def batch_sizes(self) -> list[int]:
        return [int(b[0].numel()) for b in self.batches]

    def rows(self) -> list[ImageOutcome]:
        """One outcome per image this process evaluated, in the order evaluated."""
        out = []
        for index, label, top5, names, probs in self.batches:
            hit5 = (top5 == label[:, None, None]).any(dim=2)
            for i in range(index.numel()):
                conf, logp, kl = (probs[i, :, k].tolist() for k in range(3))
                out.append(ImageOutcome(int(index[i]), int(label[i]), top5[i, :, 0].tolist(), hit5[i].tolist(),
                                        top5[i].tolist(), names[i], conf, logp,
                                        kl if self.reference is not None else None))
        return out


def probability_stats(log_probs: list, labels: torch.Tensor, reference: Optional[int]) -> torch.Tensor:
    """(B, modes, 3) float64 on the CPU: per image and mode the top-1 probability, log p(label) and
    KL(reference || mode) in nats (0 without a reference). Classes outside a --valid-labels set have p = 0."""
    stats = []
    ref = log_probs[reference] if reference is not None else None
    p_ref = ref.exp() if ref is not None else None
    for lp in log_probs:
        confidence = lp.max(dim=1).values.exp()
        log_p_label = lp.gather(1, labels.to(lp.device)[:, None])[:, 0]
        if ref is None:
            kl = torch.zeros_like(confidence)
        else:
            kl = torch.where(p_ref > 0, p_ref * (ref - lp), torch.zeros_like(p_ref)).sum(dim=1).clamp_min(0)
        stats.append(torch.stack([confidence, log_p_label, kl], dim=1))
    return torch.stack(stats, dim=1).double().cpu()


def _synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(work, device: torch.device) -> float:
    """Seconds of work() on `device`, the device synchronized before and after."""
    _synchronize(device)
    start = time.perf_counter()
    work()
    _synchronize(device)
    return time.perf_counter() - start


def loader_error_line(err: BaseException) -> str:
    """One line for an error raised in a decode worker (the DataLoader re-raises it with a traceback text).
    A CUDA error there (the pin-memory thread calls CUDA) is named as one: its cause is GPU work, not data."""
    text = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    cuda = next((line for line in text if "CUDA error" in line or "CUDA Error" in line), None)
    if cuda is not None:
        return (f"a CUDA error surfaced in the data loader's pin-memory thread, not in the data: {cuda} "
                "(the failing GPU work came before it; CUDA_LAUNCH_BLOCKING=1 names it)")
    return f"the data loader failed: {text[-1] if text else type(err).__name__}"


def model_error_line(mode: str, image_indices: torch.Tensor, err: BaseException) -> str:
    """One line for a failure inside a mode's forward (a kernel, the swap, the model): where it arose."""
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    where = f"images {int(image_indices.min())}-{int(image_indices.max())}" if image_indices.numel() else "a batch"
    return f"the {mode} model failed on {where}: {type(err).__name__}: {first}"


def evaluate(models: list[ModeModel], loader, device: torch.device, progress=None,
             warmup: Optional[bool] = None, skip_unusable: bool = False,
             classes: Optional[list[int]] = None) -> tuple[PerImage, bool]:
    """Run every model on every batch. Returns the outcomes and whether the run was interrupted.

    warmup (default: on CUDA) runs each model on the first batch and on its first image before timing, and
    once more untimed on each later batch of a size not seen before (the last, short batch), so that kernel
    compilation, autotuning and per-shape plans (cuDNN's attention builds one per shape) are reported as
    warm-up, not as model time.
    An unusable item stops the loop before its batch (skip_unusable: the batch runs without it); Ctrl-C
    or SIGTERM stops after the batch in flight. What finished is kept and reported.
    classes: predictions restricted to these class indices (ImageNet-R / -A), None: all.
    """
    warmup = device.type == "cuda" if warmup is None else warmup
    outside = None  # the classes the logits may not predict, made at the first batch (the model's width)
    result = PerImage(modes=[m.mode for m in models])
    result.reference = result.modes.index(REFERENCE_MODE) if REFERENCE_MODE in result.modes else None
    seconds = torch.zeros(len(models), dtype=torch.float64)
    result.warmup_seconds = torch.zeros(len(models), dtype=torch.float64)
    correct = torch.zeros(len(models), dtype=torch.long)
    seen = 0
    warmed = set()  # batch sizes every model has run untimed
    interrupted = False
    loop_start = time.perf_counter()
    try:
        with torch.inference_mode():
            batches = iter(loader)
            while True:
                wait_start = time.perf_counter()
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as err:  # noqa: BLE001 - a worker's failure ends the loop, not the run
                    result.stopped = loader_error_line(err)
                    break
                waited = time.perf_counter() - wait_start
                if result.batches:
                    result.data_wait_seconds += waited
                else:
                    result.first_batch_seconds = waited
                if batch.failures:
                    result.unusable.extend(batch.failures)
                    if not skip_unusable:
                        index, name, reason = batch.failures[0]
                        result.stopped = f"{reason} (pass --skip-unreadable to skip such items)"
                        break
                if batch.images is None:
                    continue
                images = batch.images.to(device, non_blocking=True)
                labels = batch.labels
                current = models[0].mode
                try:
                    if warmup and not result.batches:
                        # the full batch and a single image: kernels tune per launch-size class, and the
                        # last batches are short
                        for j, m in enumerate(models):
                            current = m.mode
                            if progress is not None:  # a new machine compiles the kernels now: say so
                                progress.set_postfix_str(f"warm-up: {m.mode} (kernels compile on first use)")
                            result.warmup_seconds[j] = timed(lambda: (m(images), m(images[:1])), device)
                        warmed.update((images.shape[0], 1))
                    elif warmup and images.shape[0] not in warmed:  # a new batch size: its plans are no model time
                        for j, m in enumerate(models):
                            current = m.mode
                            result.warmup_seconds[j] += timed(lambda: m(images), device)
                        warmed.add(images.shape[0])
                    top5, log_probs = [], []
                    for j, m in enumerate(models):
                        current = m.mode
                        _synchronize(device)
                        start, setup_before = time.perf_counter(), m.setup_seconds
                        logits = m(images).float()
                        if classes is not None:
                            if outside is None:
                                outside = torch.ones(1, logits.shape[1], dtype=torch.bool, device=logits.device)
                                outside[0, classes] = False
                            logits = logits.masked_fill(outside, float("-inf"))
                        top5.append(logits.topk(5, dim=1).indices)
                        log_probs.append(torch.log_softmax(logits, dim=1))
                        _synchronize(device)
                        setup = m.setup_seconds - setup_before  # a new batch shape captured: warm-up
                        seconds[j] += time.perf_counter() - start - setup
                        result.warmup_seconds[j] += setup
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as err:  # noqa: BLE001 - the finished batches are kept and reported
                    result.stopped = model_error_line(current, batch.index, err)
                    break
                top5_t = torch.stack(top5, 1).cpu()
                result.batches.append((batch.index, labels, top5_t, batch.names,
                                       probability_stats(log_probs, labels, result.reference)))
                n = labels.numel()
                correct += (top5_t[:, :, 0] == labels[:, None]).sum(0)
                seen += n
                if progress is not None:
                    progress.update(n)
                    progress.set_postfix_str(
                        " | ".join(f"{m.mode} {100.0 * c / seen:.1f}" for m, c in zip(models, correct.tolist()))
                    )
    except KeyboardInterrupt:
        interrupted = True
    result.seconds = seconds
    result.wall_seconds = time.perf_counter() - loop_start
    return result, interrupted
