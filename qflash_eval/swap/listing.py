"""`eval.py --list-models [PATTERN]`: timm model names and whether the integer modes can run each, decided by
the same survey that swap_attention runs (models are built on the meta device: no weights, no memory)."""
from __future__ import annotations

import sys
import warnings
from typing import Iterator, NamedTuple

from .find import survey


class ModelSupport(NamedTuple):
    name: str
    integer: bool
    note: str  # the attention kinds it holds, or why not


def model_support(name: str) -> ModelSupport:
    import timm
    import torch

    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model = timm.create_model(name, pretrained=False)
    except Exception as err:  # a timm model that cannot be built without weights or data
        return ModelSupport(name, False, f"could not be built to inspect it: {type(err).__name__}: {err}"[:200])
    found = survey(model)
    if not found.runs_integer:
        return ModelSupport(name, False, found.why_not())
    kinds = dict.fromkeys(f"{type(m).__name__} ({s.attention})" for _, m, s in found.targets)
    return ModelSupport(name, True, f"{len(found.targets)} attention modules: " + "; ".join(kinds))


def list_models(pattern: str = "*") -> Iterator[ModelSupport]:
    import timm
    from tqdm import tqdm

    names = timm.list_models(pattern)
    if not names:
        raise ValueError(f"no timm model matches {pattern!r}")
    for name in tqdm(names, desc="inspecting models", unit="model", file=sys.stderr, disable=len(names) < 20):
        yield model_support(name)
