"""Model aliases and presets from configs/*.toml, installed as the package data qflash_eval.configs."""
from __future__ import annotations

import importlib.resources
import pathlib
import tomllib
from dataclasses import dataclass
from typing import Optional

DEFAULT_HUB_DATASET = "ILSVRC/imagenet-1k"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ModelAlias:
    alias: str
    timm_name: str
    paper_label: Optional[str] = None
    paper_fp32_top1: Optional[float] = None
    paper_qflash_top1: Optional[float] = None


def _load(name: str) -> dict:
    try:  # installed (wheel or editable): package data
        text = importlib.resources.files("qflash_eval.configs").joinpath(name).read_text()
    except ModuleNotFoundError:  # a source tree on PYTHONPATH, not installed
        text = (REPO_ROOT / "configs" / name).read_text()
    return tomllib.loads(text)


def model_aliases() -> dict[str, ModelAlias]:
    return {alias: ModelAlias(alias=alias, **fields) for alias, fields in _load("models.toml")["models"].items()}


PAPER_MODELS = "paper"  # --model paper: every alias of models.toml, in its order


def resolve_model_name(name: str) -> tuple[str, Optional[ModelAlias]]:
    """An alias (deit_tiny), a paper label (DeiT-T, any case) or any timm name -> (timm name, alias or None)."""
    aliases = model_aliases()
    alias = aliases.get(name) or next(
        (a for a in aliases.values() if a.paper_label and a.paper_label.lower() == name.lower()), None)
    return (alias.timm_name, alias) if alias else (name, None)


def expand_models(text: str) -> list[str]:
    """--model: one name, a comma list, or 'paper' (the seven models of the paper)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    out = []
    for n in names:
        out.extend(model_aliases() if n == PAPER_MODELS else [n])
    return list(dict.fromkeys(out))


def presets() -> dict[str, dict]:
    return _load("presets.toml")


def preset(name: str) -> dict:
    table = presets()
    if name not in table:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(table))}")
    values = dict(table[name])
    for key in ("weights", "data", "results"):
        value = values.get(key)
        if value and (value.startswith("./") or value.startswith("../") or value.startswith("results/")):
            values[key] = str((REPO_ROOT / value).resolve())
    return values
