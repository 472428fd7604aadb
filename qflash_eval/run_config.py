"""RunConfig: every setting of an evaluation run, with its default, its flag and its help, once.

The command line is built from these fields (cli.py), a preset and a resumed run's saved settings are
overlays on the defaults, the Python API constructs a RunConfig directly, and the report records
`asdict(config)`. Imports no torch, so that `eval.py --help` starts at once.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from .config import DEFAULT_HUB_DATASET
from .modes import ALL_MODES, MODES, PEER_MODES

# what qflash_kernels accepts (tests/eval/test_run_config.py checks the two agree); kept here so that
# the parser needs no torch import
GRANULARITY_NAMES = ("sample", "head", "batch", "static")
BACKEND_NAMES = ("auto", "triton", "reference")
DTYPE_NAMES = ("bfloat16", "float16", "float32")
DEVICE_NAMES = ("auto", "cpu", "cuda")
RESULT_FORMATS = ("json", "csv")


def setting(default: Any, *flags: str, help: str, result: bool = False, **argparse_options: Any):
    """A RunConfig field: its default, command-line flags (the first long one names it), help text,
    whether it decides the run's numbers (`result`: --resume continues with it), and argparse options."""
    return field(default=default, metadata=dict(flags=flags, help=help, result=result, options=argparse_options))


@dataclass(frozen=True)
class RunConfig:
    model: Optional[str] = setting(
        None, "-m", "--model", result=True,
        help="alias from configs/models.toml (vit_base, deit_tiny, swin_tiny, ...), a paper label (DeiT-T, ViT-B, "
        "Swin-S, ...), a timm name, a comma list, or 'paper' (the paper's seven models in turn, one combined table)")
    mode: str = setting(
        "qflash", "--mode", result=True,
        help=f"one of {', '.join(MODES)}, a comma list; 'all' (= {','.join(ALL_MODES)}) and 'peers' (= {','.join(PEER_MODES)}) in it")
    no_fp16_reference: bool = setting(
        False, "--no-fp16-reference", result=True,
        help="do not add fp16 when it is not asked for (no agreement / delta columns then)")
    data: str = setting(
        DEFAULT_HUB_DATASET, "--data", result=True,
        help="a hub dataset id (streamed), a local folder (wnid sub-folders, wnid-prefixed files, or labels.txt), "
        "parquet file(s), folder or glob; the prefixes hub:, parquet: and folder: say which")
    split: str = setting("validation", "--split", result=True, help="hub split")
    weights: Optional[str] = setting(
        None, "--weights", "--checkpoint", result=True,
        help="local checkpoint read by timm's loader (.safetensors, .pth, .pth.tar; state_dict, state_dict_ema or "
        "model keys, 'module.' prefixes); 'random' for speed runs (accuracy meaningless); without it, timm's "
        "pretrained weights from the hub")
    weights_dir: Optional[str] = setting(
        None, "--weights-dir",
        help="folder of local weights named by alias, paper label or timm name (deit_tiny.safetensors, DeiT-T.pth, "
        "deit_tiny_patch16_224.safetensors); before the hub")
    use_ema: bool = setting(False, "--use-ema", result=True, help="take the EMA weights of a checkpoint that has them")
    num_samples: Optional[int] = setting(
        None, "-n", "--num-samples", type=int, result=True,
        help="evaluate N images evenly spaced over the source (image floor(i * size / N), i = 0..N-1)")
    batch_size: int = setting(64, "-b", "--batch-size", type=int, result=True, help="images per batch")
    workers: Optional[int] = setting(
        None, "-j", "--workers", type=int,
        help="decode workers per process (unset: the cores per process less one, at most 8; 0 = decode in the "
        "main process)")
    granularity: str = setting(
        "sample", "--granularity", choices=GRANULARITY_NAMES, result=True,
        help="int8 scale granularity of the integer modes (sample: per image and tensor; head: per image, tensor "
        "and head; batch: one scale per batch of --batch-size images, as the paper ran; static: calibrated)")
    calibration_images: int = setting(
        64, "--calibration-images", type=int, result=True,
        help="static granularity: images of the source used to calibrate the scales; --float-layers auto:K: images "
        "that rank the layers (never among the evaluated ones)")
    real_labels: str = setting(
        "auto", "--real-labels", result=True, metavar="auto|on|off|FILE",
        help="ReaL Top-1/Top-5 beside the clean ones, for images named ILSVRC2012_val_########: auto (where every "
        "image is so named), on (required), off, or FILE (a JSON list of 50000 label lists; default the "
        "imagenet_real_labels.json inside timm)")
    valid_labels: Optional[str] = setting(
        None, "--valid-labels", result=True, metavar="imagenet-r|imagenet-a|FILE",
        help="score in a subset of the 1000 classes, as timm does for ImageNet-R and -A: the logits restricted to "
        "those classes (FILE: class indices, one a line); unset, a folder whose classes are exactly ImageNet-R's or "
        "-A's 200 is scored so, and the report says so")
    class_map: Optional[str] = setting(
        None, "--class-map", result=True, metavar="FILE",
        help="a folder's class names (its sub-folders, or labels.txt's labels) to the model's class indices, as timm "
        "reads it: a name a line (index = line number) or '<name> <index>'")
    float_layers: Optional[str] = setting(
        None, "--float-layers", result=True,
        help="beside each integer mode, the same mode with these attention layers in fp16: indices as diagnose "
        "numbers them (3,7), or auto:K for the K layers diagnose ranks worst on --calibration-images images that "
        "are not evaluated; named MODE+fp16[3,7] in the report")
    ivit_bits: int = setting(16, "--ivit-bits", type=int, result=True,
                             help="I-ViT Shiftmax output bits, 2-16 (I-ViT's Swin uses 8)")
    dtype: str = setting("float16", "--dtype", choices=DTYPE_NAMES, result=True,
                         help="model dtype of the integer modes (fp32/fp16 modes are what they say)")
    qflash_backend: str = setting(
        "auto", "--qflash-backend", choices=BACKEND_NAMES, result=True,
        help="qflash, qflash_paper and ivit: auto = the Triton kernels on CUDA, the bit-exact PyTorch references "
        "on CPU")
    device: str = setting("auto", "--device", choices=DEVICE_NAMES, help="auto = accelerate's choice")
    cuda_graphs: Optional[bool] = setting(
        None, "--cuda-graphs", action=argparse.BooleanOptionalAction,
        help="replay each mode's forward from CUDA graphs (one per batch shape): images/s without the host's "
        "launch time, as deployed; the same predictions (default: on where the run is on CUDA)")
    results: Optional[str] = setting(
        None, "--results", "--results-file",
        help="NAME.json or NAME.csv; the JSON, CSV, Markdown, PNG chart and per-image predictions are all written "
        "as NAME.* (unset: results/<model>-<time>.json; with several models, a folder)")
    results_format: Optional[str] = setting(None, "--results-format", choices=RESULT_FORMATS,
                                            help="suffix for a --results NAME without one")
    overwrite: bool = setting(False, "--overwrite", help="replace results files that exist")
    skip_unreadable: bool = setting(
        False, "--skip-unreadable",
        help="skip unreadable images and invalid rows (listed in the report; smaller denominators) instead of "
        "stopping at the first one")
    resume: Optional[str] = setting(
        None, "--resume", metavar="RESULTS.json",
        help="continue an interrupted or stopped run: evaluates only its missing images, with its settings, and "
        "rewrites its results")
    no_progress: bool = setting(False, "--no-progress", help="no progress bar")

    def overlay(self, values: dict, where: str) -> "RunConfig":
        """A copy with `values` (field name -> value) in place; an unknown name is an error naming `where`."""
        unknown = sorted(set(values) - set(FIELD_NAMES))
        if unknown:
            raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(FIELD_NAMES)}")
        return dataclasses.replace(self, **values)

    def result_settings(self) -> dict:
        """The settings that decide the run's numbers (what --resume continues with)."""
        return {name: getattr(self, name) for name in RESULT_FIELDS}

    def check(self) -> None:
        """Numbers that make no sense fail here, with the flag's name, before anything is loaded."""
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"--workers must be 0 or more (got {self.workers})")
        if self.granularity == "static" and self.calibration_images < 1:
            raise ValueError(f"--granularity static needs --calibration-images >= 1 (got {self.calibration_images})")
        if not 2 <= self.ivit_bits <= 16:
            raise ValueError(f"--ivit-bits must be 2-16 (got {self.ivit_bits})")
        for name, allowed in (("granularity", GRANULARITY_NAMES), ("qflash_backend", BACKEND_NAMES),
                              ("dtype", DTYPE_NAMES), ("device", DEVICE_NAMES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{flag_name(name)} must be one of {', '.join(allowed)} "
                                 f"(got {getattr(self, name)!r})")


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(RunConfig))
RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.metadata["result"])


def flag_name(name: str) -> str:
    return name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field. Defaults are left out of the namespace (argparse.SUPPRESS), so that
    only the flags a user gave overlay a preset or a resumed run; --help shows each field's default."""
    for f in dataclasses.fields(RunConfig):
        meta = f.metadata
        shown = "" if f.default is None or isinstance(f.default, bool) else f" (default: {f.default})"
        options = dict(meta["options"])
        if isinstance(f.default, bool):
            options["action"] = "store_true"
        parser.add_argument(*meta["flags"], dest=f.name, default=argparse.SUPPRESS, help=meta["help"] + shown,
                            **options)
