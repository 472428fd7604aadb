"""Images/s of each fallback step, measured apart from the evaluation: every configuration's forward on one
batch of the run's size, replayed from a CUDA graph (eagerly on a CPU), median of repeats, in this process.

The evaluation's own per-mode time covers only a few batches of a small sample, one configuration after the
other, so it is not a speed; this is the same measurement for every step."""
from __future__ import annotations

import statistics

REPEATS = 20


def method(batch: int, repeats: int = REPEATS) -> str:
    """How images_per_second measures, for the table."""
    return (f"one batch of {batch} random images per configuration, CUDA-graph replays, median of {repeats}, "
            "this process")


def configured_model(base_model, name: str, dtype, device, backend: str):
    """A copy of base_model with its attention in mode `name`, in that mode's dtype, on `device`, in eval mode."""
    from ..attention_swap import AttentionConfig, mode_copy
    from ..modes import MODES, parse_modes

    if name not in MODES:
        parse_modes(name, with_reference=False)
    mode_dtype = MODES[name].dtype(str(dtype).replace("torch.", ""))
    return mode_copy(base_model, AttentionConfig(name, backend=backend), mode_dtype, device)[0]


def images_per_second(base_model, names: list[str], batch: int, input_size, dtype, device, backend: str,
                      repeats: int = REPEATS) -> dict:
    """{mode: images/s} of one (batch, *input_size) random batch through each configuration."""
    import torch

    from ..evaluate import timed
    from ..graphs import GraphedForward

    x = torch.randn(batch, *input_size, device=device)
    speeds = {}
    for name in names:
        model = configured_model(base_model, name, dtype, device, backend)
        forward = GraphedForward(model) if device.type == "cuda" else model
        with torch.inference_mode():
            inputs = x.to(next(model.parameters()).dtype)
            for _ in range(3):  # compile, capture, warm
                forward(inputs)
            seconds = [timed(lambda: forward(inputs), device) for _ in range(repeats)]
        speeds[name] = round(batch / statistics.median(seconds), 1)
    return speeds
