"""Command line: `python eval.py --model vit_base --mode qflash`, and `python eval.py compare A.json B.json`.

This module parses and dispatches; run.py evaluates, compare.py merges saved results.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Optional

from .config import DEFAULT_HUB_DATASET, PAPER_MODELS, preset
from .modes import ALL_MODES, MODES

DTYPE_NAMES = ("bfloat16", "float16", "float32")


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("qflash-eval")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eval.py",
        description="ImageNet Top-1/Top-5 of a timm ViT/DeiT/Swin with fp16, I-ViT or QFlash integer attention, "
        "side by side on the same images. `eval.py compare A.json B.json` merges saved results.",
    )
    p.add_argument("--version", action="version", version=f"qflash-eval {version()}")
    p.add_argument("--preset", help="defaults from configs/presets.toml (smoke, paper); flags given here win")
    p.add_argument("-m", "--model", help="alias from configs/models.toml (vit_base, deit_tiny, swin_tiny, ...), a "
                   "paper label (DeiT-T, ViT-B, Swin-S, ...), a timm name, a comma list, or 'paper' (the paper's "
                   "seven models in turn, one combined table)")
    p.add_argument("--all", action="store_true", help="the paper's seven models (= --model paper)")
    p.add_argument("--mode", help=f"one of {', '.join(MODES)}, a comma list, or 'all' (= {','.join(ALL_MODES)})")
    p.add_argument("--no-fp16-reference", action="store_true",
                   help="do not add fp16 when it is not asked for (no agreement / delta columns then)")
    p.add_argument("--data", help=f"hub dataset id (default {DEFAULT_HUB_DATASET}, streamed), a local folder "
                   "(wnid sub-folders, wnid-prefixed files, or labels.txt), parquet file(s), folder or glob")
    p.add_argument("--split", help="hub split (default validation)")
    p.add_argument("--weights", "--checkpoint", dest="weights",
                   help="local checkpoint read by timm's loader (.safetensors, .pth, .pth.tar; state_dict, "
                   "state_dict_ema or model keys, 'module.' prefixes); 'random' for speed runs (accuracy "
                   "meaningless); without it, timm's pretrained weights from the hub")
    p.add_argument("--pretrained", action="store_true", help="timm's pretrained weights (the default without --weights)")
    p.add_argument("--weights-dir", help="folder of local weights named by alias, paper label or timm name "
                   "(deit_tiny.safetensors, DeiT-T.pth, deit_tiny_patch16_224.safetensors); before the hub")
    p.add_argument("--use-ema", action="store_true", help="take the EMA weights of a checkpoint that has them")
    p.add_argument("--num-samples", type=int, help="evaluate N images evenly spaced over the source "
                   "(image floor(i * size / N), i = 0..N-1)")
    p.add_argument("-b", "--batch-size", type=int, help="images per batch (default 64)")
    p.add_argument("-j", "--workers", type=int,
                   help="decode workers per process (default: the cores per process less one, at most 8; 0 = "
                   "decode in the main process)")
    p.add_argument("--granularity", choices=["sample", "head", "batch", "static"],
                   help="int8 scale granularity for integer modes (default sample: per image and tensor; head: per "
                   "image, tensor and head; batch: one scale per batch of --batch-size images, as the paper ran)")
    p.add_argument("--calibration-images", type=int, default=None,
                   help="static granularity: images of the source used to calibrate the scales (default 64)")
    p.add_argument("--ivit-bits", type=int, help="I-ViT Shiftmax output bits (default 16; I-ViT's Swin uses 8)")
    p.add_argument("--dtype", choices=DTYPE_NAMES,
                   help="model dtype of the integer modes (default float16; fp32/fp16 modes are what they say)")
    p.add_argument("--qflash-backend", choices=["auto", "triton", "reference"],
                   help="qflash, qflash_paper and ivit: auto = the Triton kernels on CUDA, the bit-exact PyTorch "
                   "references on CPU")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto (accelerate's choice)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="replay each mode's forward from CUDA graphs (one per batch shape): images/s without "
                   "the host's launch time, as deployed; same results")
    p.add_argument("--results", "--results-file", dest="results",
                   help="NAME.json or NAME.csv; the JSON, CSV, Markdown, PNG chart and per-image predictions are "
                   "all written as NAME.* (default results/<model>-<time>.json; with several models, a folder)")
    p.add_argument("--results-format", choices=["json", "csv"], help="suffix for a --results NAME without one")
    p.add_argument("--overwrite", action="store_true", help="replace results files that exist")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="skip unreadable images and invalid rows (listed in the report; smaller denominators) "
                   "instead of stopping at the first one")
    p.add_argument("--resume", metavar="RESULTS.json",
                   help="continue an interrupted or stopped run: evaluates only its missing images, with its "
                   "settings, and rewrites its results")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


DEFAULTS = dict(
    mode="qflash", data=DEFAULT_HUB_DATASET, split="validation", batch_size=64, workers=None, granularity="sample",
    calibration_images=64, ivit_bits=16, dtype="float16", qflash_backend="auto", device="auto",
)


def resolve_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Flags, then a --resume run's settings or a --preset, then the defaults."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.all:
        if args.model:
            raise ValueError("--all and --model both name the models: give one of them")
        args.model = PAPER_MODELS
    if args.pretrained and args.weights:
        raise ValueError("--pretrained and --weights/--checkpoint both choose the weights: give one of them")
    base = dict(DEFAULTS)
    if args.preset:
        base.update(preset(args.preset))
    if args.resume:
        base.update(resume_settings(args))
        args.results = args.results or args.resume
    for key, value in base.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if not args.model:
        raise ValueError("--model is required (or a --preset that names one)")
    return args


def resume_settings(args: argparse.Namespace) -> dict:
    """The settings of the run --resume continues; a flag given here that contradicts them is an error."""
    from .compare import read_report
    from .report import RESULT_SETTINGS

    saved = read_report(args.resume).get("settings")
    if not saved:
        raise ValueError(f"--resume {args.resume}: the file records no settings (written by an older version)")
    for key in RESULT_SETTINGS:
        given = getattr(args, key, None)
        if given not in (None, False) and given != saved.get(key):
            raise ValueError(f"--resume {args.resume} continues that run with its own settings: "
                             f"--{key.replace('_', '-')} {given} differs from its {saved.get(key)}")
    for key in ("no_fp16_reference", "use_ema"):
        setattr(args, key, bool(saved.get(key)))
    return {k: v for k, v in saved.items() if k not in ("no_fp16_reference", "use_ema")}


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["compare"]:
            return compare_main(argv[1:])
        return eval_main(argv)
    except KeyboardInterrupt:
        print("eval.py: interrupted", file=sys.stderr)
        return 130


def eval_main(argv: list[str]) -> int:
    try:
        args = resolve_args(argv)
    except ValueError as err:
        print(f"eval.py: error: {err}", file=sys.stderr)
        return 2
    from .attention_swap import UnsupportedAttentionError
    from .data import DataError
    from .hub import HubUnavailableError
    from .run import run

    try:
        return run(args)
    except (ValueError, FileNotFoundError, DataError, HubUnavailableError, UnsupportedAttentionError,
            RuntimeError) as err:
        print(f"eval.py: error: {err}", file=sys.stderr)
        return 2


def compare_main(argv: list[str]) -> int:
    from .compare import compare

    p = argparse.ArgumentParser(prog="eval.py compare", description="merge saved results into one table")
    p.add_argument("results", nargs="+", help="results JSON files written by eval.py")
    p.add_argument("--out", help="also write the Markdown table here")
    p.add_argument("--csv", help="also write the tidy CSV of every run here (one row per run and mode)")
    p.add_argument("--chart", help="also draw Top-1 and agreement of every run into this PNG")
    args = p.parse_args(argv)
    try:
        table, warnings, named = compare(args.results)
        for target in (args.out, args.csv, args.chart):
            if target and not pathlib.Path(target).expanduser().parent.is_dir():
                raise ValueError(f"cannot write {target}: folder {pathlib.Path(target).parent} does not exist")
    except ValueError as err:
        print(f"eval.py compare: error: {err}", file=sys.stderr)
        return 2
    print(table)
    for line in warnings:
        print(line, file=sys.stderr)
    from .outputs import atomic_write, csv_text, tidy_rows

    if args.out:
        atomic_write(pathlib.Path(args.out), table + "\n" + "".join(f"\n{w}" for w in warnings) + "\n")
    if args.csv:
        atomic_write(pathlib.Path(args.csv), csv_text([row for _, r in named for row in tidy_rows(r)]))
    if args.chart:
        from .charts import accuracy_chart

        atomic_write(pathlib.Path(args.chart), accuracy_chart([r for _, r in named], [n for n, _ in named]))
    return 0
