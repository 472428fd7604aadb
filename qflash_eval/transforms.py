"""The eval transform of a timm model (resize, centre crop, normalize), built in one place."""
from __future__ import annotations

from torch import nn


def eval_data_config(model: nn.Module) -> dict:
    """timm's resolved data config of `model` (input size, interpolation, crop_pct, mean, std)."""
    import timm.data

    return timm.data.resolve_data_config({}, model=model)


def eval_transform(data_config: dict):
    import timm.data

    return timm.data.create_transform(**data_config)


def describe(data_config: dict) -> dict:
    """The data config as JSON-ready values, for the report."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()}
