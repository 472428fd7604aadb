"""The Python API: evaluate a timm model (or any model with timm attention blocks) in several modes."""
from __future__ import annotations

from typing import Optional, Sequence

from torch import nn


def evaluate_model(model: nn.Module, data: str, modes: Sequence[str] = ("fp16", "qflash"), *,
                   num_samples: Optional[int] = None, batch_size: int = 64, granularity: str = "sample",
                   dtype: str = "float16", backend: str = "auto", device: str = "auto", workers: Optional[int] = None,
                   skip_unreadable: bool = False, results: Optional[str] = None, progress: bool = True) -> dict:
    """Top-1/Top-5 of `model` with each attention mode on the same images; returns the report dict.

    model: a timm vision transformer (weights as they are; a copy is swapped per mode, `model` is left alone).
    data: a local ImageNet folder, parquet file(s) or a hub dataset id, as --data takes.
    modes: names of qflash_eval.MODES; fp16 is added as the reference unless present.
    results: also write the JSON, CSV, Markdown, chart and predictions as `results` (a .json path).
    The report is what eval.py writes: report["results"][mode]["top1"], ["agreement"], ...
    """
    from .models import LoadedModel
    from .run import run_one
    from .run_config import RunConfig

    config = RunConfig(
        model=getattr(model, "default_cfg", {}).get("architecture", type(model).__name__), mode=",".join(modes),
        data=data, num_samples=num_samples, batch_size=batch_size, granularity=granularity, dtype=dtype,
        qflash_backend=backend, device=device, workers=workers, skip_unreadable=skip_unreadable, results=results,
        no_progress=not progress)
    pretrained = getattr(model, "pretrained_cfg", {}) or {}
    tag = f".{pretrained['tag']}" if pretrained.get("tag") else ""
    timm_name = pretrained.get("architecture", config.model) + tag
    loaded = LoadedModel(model, timm_name, None, "in-memory model", None)
    code, report = run_one(config, loaded=loaded, write=results is not None)
    if report is None:
        raise RuntimeError(f"the evaluation ended with exit code {code} and no report")
    return report
