"""PreparedRun: what one model's run has set up before its loop (settings, data, the model in every mode),
handed from run.prepare to the loop, the report and the outputs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .run_config import RunConfig


@dataclass
class PreparedRun:
    config: RunConfig
    modes: list[str]
    paths: Optional[Any]  # outputs.ResultPaths, None when nothing is written (the Python API)
    accelerator: Any  # accelerate.Accelerator
    device: Any  # torch.device
    workers: int  # decode workers per process, resolved
    source: Any  # data.ImageSource
    prior: Optional[Any]  # resume.PriorRun
    loaded: Any  # models.LoadedModel
    data_config: dict  # timm's resolved eval data config
    mode_models: list  # evaluate.ModeModel, one per mode
    calibration: Optional[dict] = None  # static granularity: how the scales were calibrated
    valid_labels: Optional[dict] = None  # the classes the logits are restricted to (ImageNet-R / -A), None: all
    float_layers: Optional[dict] = None  # --float-layers auto:K: the layers chosen and the images they came from
    prepare_seconds: float = 0.0  # checks, data source, model and its mode copies, before the loop
    prepare_steps: dict = field(default_factory=dict)  # seconds of each of prepare's steps
