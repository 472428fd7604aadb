"""Rank a mode's attention layers by diagnose's local error (mean SQNR over heads, worst first) on calibration
images, and resolve `MODE+fp16[auto:K]` into the K worst layers."""
from __future__ import annotations

import torch


def rank_layers(base_model, mode: str, images: torch.Tensor, dtype, device, backend: str = "auto",
                granularity: str = "sample", batch_size: int = 16) -> list[tuple[int, float]]:
    """[(layer, mean SQNR dB)] worst first, measured on `images` with diagnose's statistics."""
    from ..diagnose.measure import Diagnosis

    diagnosis = Diagnosis(base_model, [mode], granularity if granularity != "static" else "sample", dtype, device,
                          backend)
    for chunk in images.split(batch_size):
        diagnosis.add_batch(chunk)
    layers = diagnosis.summary()[mode]["layers"]
    means = [(i, sum(layer["sqnr_db"]) / len(layer["sqnr_db"])) for i, layer in enumerate(layers)]
    return sorted(means, key=lambda item: item[1])


def resolve_auto_float_layers(modes: list[str], config, base_model, device) -> tuple[list[str], dict]:
    """Modes with `+fp16[auto:K]` replaced by the K worst layers of their integer mode; (modes, what was
    chosen and on which images, for the report). Calibration images are never evaluated."""
    from ..modes import parse_modes
    from ..transforms import eval_data_config, eval_transform
    from ..variants import float_layers_name, is_float_layers_spec, parse_float_layers
    from .calibration import calibration_images

    auto = [m for m in modes if is_float_layers_spec(m) and isinstance(parse_float_layers(m)[1], str)]
    if not auto:
        return modes, {}
    images, positions = calibration_images(config.data, config.split, config.num_samples, config.calibration_images,
                                           eval_transform(eval_data_config(base_model)))
    chosen, resolved = {}, []
    for name in modes:
        if name not in auto:
            resolved.append(name)
            continue
        base, spec = parse_float_layers(name)
        ranking = rank_layers(base_model, base, images, getattr(torch, config.dtype), device, config.qflash_backend,
                              config.granularity, config.batch_size)
        layers = [i for i, _ in ranking[:int(spec.partition(":")[2])]]
        concrete = float_layers_name(base, layers)
        parse_modes(concrete, with_reference=False)  # registers it
        resolved.append(concrete)
        chosen[concrete] = {"asked": name, "ranking_sqnr_db": [[i, round(s, 2)] for i, s in ranking]}
    return list(dict.fromkeys(resolved)), {"images": len(positions), "positions": positions,
                                          "source": "images not evaluated (evenly spaced over the rest)",
                                          "chosen": chosen}
