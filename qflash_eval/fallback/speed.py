"""Images/s of each fallback step, measured apart from the evaluation: every configuration's forward on one
batch of the run's size, replayed from a CUDA graph (eagerly on a CPU), median of repeats, in this process.

The evaluation's own per-mode time covers only a few batches of a small sample, one configuration after the
other, so it is not a speed; this is the same measurement for every step."""
from __future__ import annotations

import copy
import statistics
import time


def configured_model(base_model, name: str, dtype, device, backend: str):
    """A copy of base_model with its attention in mode `name`, in that mode's dtype, on `device`, in eval mode."""
    from ..attention_swap import AttentionConfig, swap_attention
    from ..modes import MODES, parse_modes

    if name not in MODES:
        parse_modes(name, with_reference=False)
    model = copy.deepcopy(base_model)
    swap_attention(model, AttentionConfig(name, backend=backend))
    return model.to(device, MODES[name].dtype(str(dtype).replace("torch.", ""))).eval()


def images_per_second(base_model, names: list[str], batch: int, input_size, dtype, device, backend: str,
                      repeats: int = 20) -> dict:
    """{mode: images/s} of one (batch, *input_size) random batch through each configuration."""
    import torch

    from ..graphs import GraphedForward

    x = torch.randn(batch, *input_size, device=device)
    speeds = {}
    for name in names:
        model = configured_model(base_model, name, dtype, device, backend)
        dtype_in = next(model.parameters()).dtype
        forward = GraphedForward(model) if device.type == "cuda" else model
        with torch.inference_mode():
            inputs = x.to(dtype_in)
            for _ in range(3):  # compile, capture, warm
                forward(inputs)
            seconds = []
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                forward(inputs)
                _sync(device)
                seconds.append(time.perf_counter() - start)
        speeds[name] = round(batch / statistics.median(seconds), 1)
        del model, forward
    return speeds


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
