"""Command line: `python eval.py --model vit_base --mode qflash`, and `python eval.py compare A.json B.json`.

This module parses and dispatches; run.py evaluates, compare.py merges saved results.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Optional

from .config import DEFAULT_HUB_DATASET, preset
from .modes import ALL_MODES, MODES

DTYPE_NAMES = ("bfloat16", "float16", "float32")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eval.py",
        description="ImageNet Top-1/Top-5 of a timm ViT/DeiT/Swin with fp16, I-ViT or QFlash integer attention, "
        "side by side on the same images. `eval.py compare A.json B.json` merges saved results.",
    )
    p.add_argument("--preset", help="defaults from configs/presets.toml (smoke, paper); flags given here win")
    p.add_argument("--model", help="alias from configs/models.toml (vit_base, deit_tiny, swin_tiny, ...) or a timm name")
    p.add_argument("--mode", help=f"one of {', '.join(MODES)}, a comma list, or 'all' (= {','.join(ALL_MODES)})")
    p.add_argument("--no-fp16-reference", action="store_true",
                   help="do not add fp16 when it is not asked for (no agreement / delta columns then)")
    p.add_argument("--data", help=f"hub dataset id (default {DEFAULT_HUB_DATASET}, streamed), a local folder "
                   "(wnid sub-folders, wnid-prefixed files, or labels.txt), parquet file(s), folder or glob")
    p.add_argument("--split", help="hub split (default validation)")
    p.add_argument("--weights", help="local .safetensors/.pth; 'random' for speed runs (accuracy meaningless); "
                   "without it, timm's pretrained weights from the hub")
    p.add_argument("--num-samples", type=int, help="evaluate only the first N images of the source")
    p.add_argument("--batch-size", type=int, help="images per batch (default 64)")
    p.add_argument("--workers", type=int, help="decode workers per process (default 4, 0 = in the main process)")
    p.add_argument("--granularity", choices=["sample", "batch", "static"],
                   help="int8 scale granularity for integer modes (default sample: per image and tensor)")
    p.add_argument("--calibration-images", type=int, default=None,
                   help="static granularity: images of the source used to calibrate the scales (default 64)")
    p.add_argument("--ivit-bits", type=int, help="I-ViT Shiftmax output bits (default 16; I-ViT's Swin uses 8)")
    p.add_argument("--dtype", choices=DTYPE_NAMES,
                   help="model dtype of the integer modes (default float16; fp32/fp16 modes are what they say)")
    p.add_argument("--qflash-backend", choices=["auto", "triton", "reference"],
                   help="qflash and qflash_paper: auto = the Triton kernel on CUDA, the bit-exact PyTorch "
                   "reference on CPU")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto (accelerate's choice)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="replay each mode's forward from CUDA graphs (one per batch shape): images/s without "
                   "the host's launch time, as deployed; same results")
    p.add_argument("--results", help="JSON path; CSV, Markdown and per-image predictions go beside it "
                   "(default results/<model>-<time>.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


DEFAULTS = dict(
    mode="qflash", data=DEFAULT_HUB_DATASET, split="validation", batch_size=64, workers=4, granularity="sample",
    calibration_images=64, ivit_bits=16, dtype="float16", qflash_backend="auto", device="auto",
)


def resolve_args(argv: Optional[list[str]]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    base = dict(DEFAULTS)
    if args.preset:
        base.update(preset(args.preset))
    for key, value in base.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if not args.model:
        raise SystemExit("eval.py: error: --model is required (or a --preset that names one)")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        return compare_main(argv[1:])
    from .data import DataError
    from .hub import HubUnavailableError
    from .attention_swap import UnsupportedAttentionError
    from .run import run

    try:
        return run(resolve_args(argv))
    except (ValueError, FileNotFoundError, DataError, HubUnavailableError, UnsupportedAttentionError,
            RuntimeError) as err:
        print(f"eval.py: error: {err}", file=sys.stderr)
        return 2


def compare_main(argv: list[str]) -> int:
    from .compare import compare

    p = argparse.ArgumentParser(prog="eval.py compare", description="merge saved results into one table")
    p.add_argument("results", nargs="+", help="results JSON files written by eval.py")
    p.add_argument("--out", help="also write the Markdown table here")
    args = p.parse_args(argv)
    try:
        table = compare(args.results)
    except ValueError as err:
        print(f"eval.py compare: error: {err}", file=sys.stderr)
        return 2
    print(table)
    if args.out:
        pathlib.Path(args.out).write_text(table + "\n")
    return 0
