"""The flags that the commands built on an evaluation share (sweep, fallback)."""
from __future__ import annotations

import argparse
import pathlib


def command_parser(kind: str, description: str, data_help: str, mode_help: str,
                   samples_help: str) -> argparse.ArgumentParser:
    """`eval.py KIND`'s parser with the shared flags: model, weights, data, mode, images, batch, device, backend,
    results (NAME.json, the command's NAME.KIND.* beside it)."""
    p = argparse.ArgumentParser(prog=f"eval.py {kind}", description=description)
    p.add_argument("-m", "--model", required=True, help="alias, paper label or timm name (as for an evaluation)")
    p.add_argument("--weights", "--checkpoint", default=None, help="local checkpoint, or 'random'")
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--mode", required=True, help=mode_help)
    p.add_argument("-n", "--num-samples", type=int, default=None, help=samples_help)
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--qflash-backend", default="auto", choices=("auto", "triton", "reference"),
                   help="the integer modes' kernels: Triton (CUDA, or the interpreter) or the bit-exact reference")
    p.add_argument("--results", default=None, help=f"NAME.json (default results/{kind}-MODEL-TIME.json); the table "
                   f"is NAME.{kind}.json / .md / .png beside the evaluation's files")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def command_device(choice: str):
    """--device auto | cpu | cuda as a torch.device (auto: CUDA where there is one)."""
    import torch

    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()) else "cpu")


def checked_results(results: str, overwrite: bool) -> "pathlib.Path":
    """--results NAME.json, checked as an evaluation checks it, before anything is loaded."""
    from .outputs import check_writable, result_paths

    paths = result_paths(results)
    check_writable(paths, overwrite)
    return paths.json

