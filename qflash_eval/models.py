"""timm models by alias or name, with local weights or the hub's pretrained ones."""
from __future__ import annotations

import hashlib
import pathlib
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .config import ModelAlias, resolve_model_name
from .hub import HubUnavailableError, go_offline_if_unreachable


RANDOM_WEIGHTS = "random"


@dataclass
class LoadedModel:
    model: nn.Module
    timm_name: str
    alias: Optional[ModelAlias]
    weights: str  # a path, or "hub:<timm name>"
    weights_sha256: Optional[str]


def sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict(path: pathlib.Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            return state[key]
    return state


def create_model(name: str, weights: Optional[str] = None) -> LoadedModel:
    """Build `name` (alias or timm name) in eval mode.

    `weights`: a local .safetensors/.pth file, "random" (timm's initialisation, seed 0: for speed runs
    only, accuracy is meaningless), or None for timm's pretrained weights from the hub.
    """
    import timm

    timm_name, alias = resolve_model_name(name)
    base_name = timm_name.split(".")[0]
    if not timm.is_model(base_name):
        raise ValueError(f"unknown model {name!r}: not an alias in configs/models.toml nor a timm model name")
    if weights == RANDOM_WEIGHTS:
        torch.manual_seed(0)
        model = timm.create_model(timm_name, pretrained=False)
        return LoadedModel(model.eval(), timm_name, alias, RANDOM_WEIGHTS, None)
    if weights is not None:
        path = pathlib.Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        model = timm.create_model(timm_name, pretrained=False)
        try:
            model.load_state_dict(load_state_dict(path), strict=True)
        except RuntimeError as err:
            raise ValueError(f"weights {path} do not fit {timm_name}: {str(err)[:500]}") from err
        return LoadedModel(model.eval(), timm_name, alias, str(path.resolve()), sha256_of(path))

    online = go_offline_if_unreachable()
    try:
        model = timm.create_model(timm_name, pretrained=True)
    except Exception as err:  # noqa: BLE001 - timm/huggingface_hub raise many types for a missing file
        where = "the hub is reachable but" if online else "the Hugging Face hub cannot be reached and"
        raise HubUnavailableError(
            f"{where} the pretrained weights of {timm_name} could not be loaded ({type(err).__name__}). "
            f"Pass --weights /path/to/{base_name}.safetensors (or .pth) to evaluate local weights."
        ) from err
    return LoadedModel(model.eval(), timm_name, alias, f"hub:{timm_name}", None)
