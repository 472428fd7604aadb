"""timm models by alias or name, with local weights or the hub's pretrained ones."""
from __future__ import annotations

import hashlib
import pathlib
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .config import ModelAlias, model_aliases, resolve_model_name
from .hub import HubUnavailableError, go_offline_if_unreachable


RANDOM_WEIGHTS = "random"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pth.tar", ".pt", ".bin")


@dataclass
class LoadedModel:
    model: nn.Module
    timm_name: str
    alias: Optional[ModelAlias]
    weights: str  # a path, "random", or "hub:<timm name>"
    weights_sha256: Optional[str]
    param_count: Optional[int] = None  # counted when built: the model itself is released once copied

    def __post_init__(self):
        if self.param_count is None and self.model is not None:
            self.param_count = sum(p.numel() for p in self.model.parameters())


def sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_weights_file(path: pathlib.Path) -> None:
    """Cheap checks, before any model is built: the file exists and looks like what its suffix says."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix == ".safetensors":
        header_len = int.from_bytes(head, "little") if len(head) == 8 else 0
        if not 2 <= header_len <= max(2, path.stat().st_size - 8):
            raise ValueError(f"weights file {path} is not a valid .safetensors file (bad header)")
    elif not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise ValueError(f"weights file {path} is neither a torch zip checkpoint nor a pickle; "
                         "expected .safetensors or a torch.save()d state dict")


def load_weights(model: nn.Module, path: pathlib.Path, use_ema: bool = False) -> None:
    """timm's own checkpoint loader (state_dict / state_dict_ema / model keys, 'module.' prefixes, safetensors),
    tensors only (no pickled code), with errors that name the file."""
    from timm.models import load_checkpoint

    try:
        load_checkpoint(model, str(path), use_ema=use_ema, strict=True)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"weights file not found: {path}") from err
    except Exception as err:  # noqa: BLE001 - safetensors, pickle, zip and timm raise their own types
        text = str(err)
        if "Error(s) in loading state_dict" in text or "size mismatch" in text:
            raise ValueError(f"weights {path} do not fit {type(model).__name__}: {text[:500]}") from err
        if "weights only" in text.lower() or "weights_only" in text or "Unsupported global" in text:
            reason = "it holds pickled objects, not only tensors (a whole model?); save model.state_dict() instead"
        else:
            reason = text.splitlines()[0][:300] if text.strip() else type(err).__name__
        raise ValueError(f"cannot read weights file {path}: {reason}") from err


def find_in_weights_dir(folder: pathlib.Path, timm_name: str, alias: Optional[ModelAlias]) -> Optional[pathlib.Path]:
    """A file in `folder` named by the alias, the paper label, the timm name or its architecture."""
    stems = [n for n in (alias.alias if alias else None, alias.paper_label if alias else None, timm_name,
                         timm_name.split(".")[0]) if n]
    for stem in stems:
        for suffix in WEIGHT_SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def suggestions(name: str, limit: int = 5) -> list[str]:
    """Aliases, paper labels and timm names close to an unknown `name`."""
    import difflib

    import timm

    aliases = model_aliases()
    known = list(aliases) + [a.paper_label for a in aliases.values() if a.paper_label]
    close = difflib.get_close_matches(name, known, n=limit, cutoff=0.5)
    close += timm.list_models(f"*{name}*")[:limit]
    close += difflib.get_close_matches(name, timm.list_models(), n=limit, cutoff=0.6)
    return list(dict.fromkeys(close))[:limit]


def check_model_name(name: str) -> tuple[str, Optional[ModelAlias]]:
    """(timm name, alias) of a known model, or a ValueError with the closest names."""
    import timm

    timm_name, alias = resolve_model_name(name)
    if not timm.is_model(timm_name.split(".")[0]):
        hint = suggestions(name)
        raise ValueError(f"unknown model {name!r}: not an alias in configs/models.toml, a paper label nor a timm "
                         "model name" + (f"; did you mean {', '.join(hint)}?" if hint else ""))
    return timm_name, alias


def create_model(name: str, weights: Optional[str] = None, weights_dir: Optional[str] = None,
                 use_ema: bool = False) -> LoadedModel:
    """Build `name` (alias, paper label or timm name) in eval mode.

    `weights`: a local file timm's checkpoint loader reads, "random" (timm's initialisation, seed 0: for
    speed runs only, accuracy is meaningless), or None: a file of `weights_dir` named after the model,
    else timm's pretrained weights from the hub (or its local cache when offline).
    """
    import timm

    timm_name, alias = check_model_name(name)
    base_name = timm_name.split(".")[0]
    if weights == RANDOM_WEIGHTS:
        torch.manual_seed(0)
        model = timm.create_model(timm_name, pretrained=False)
        return LoadedModel(model.eval(), timm_name, alias, RANDOM_WEIGHTS, None)
    if weights is None and weights_dir is not None:
        found = find_in_weights_dir(pathlib.Path(weights_dir).expanduser(), timm_name, alias)
        weights = str(found) if found else None
    if weights is not None:
        path = pathlib.Path(weights).expanduser()
        check_weights_file(path)
        model = timm.create_model(timm_name, pretrained=False)
        load_weights(model, path, use_ema)
        return LoadedModel(model.eval(), timm_name, alias, str(path.resolve()), sha256_of(path))

    online = go_offline_if_unreachable()
    try:
        model = timm.create_model(timm_name, pretrained=True)
    except Exception as err:  # noqa: BLE001 - timm/huggingface_hub raise many types for a missing file
        where = "the hub is reachable but" if online else "the Hugging Face hub cannot be reached and"
        folder = f" or a --weights-dir holding {base_name}.safetensors" if weights_dir is None else (
            f"; {weights_dir} holds no file named {alias.alias if alias else base_name}.safetensors (or .pth)")
        raise HubUnavailableError(
            f"{where} the pretrained weights of {timm_name} could not be loaded ({type(err).__name__}). "
            f"Pass --weights /path/to/{base_name}.safetensors (or .pth){folder} to evaluate local weights."
        ) from err
    return LoadedModel(model.eval(), timm_name, alias, f"hub:{timm_name}", None)
