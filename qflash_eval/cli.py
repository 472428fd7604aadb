"""Command line: `python eval.py --model vit_base --mode qflash`, `python eval.py compare A.json B.json`, and
`python eval.py diagnose -m MODEL --data DATA --mode MODES`.

This module parses into a RunConfig and dispatches: suite.py runs the models (run.py one of them),
compare.py merges saved results, diagnose/ says which layer and head lose accuracy.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Optional

from .config import PAPER_MODELS, preset
from .run_config import FIELD_NAMES, RunConfig, add_config_arguments


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("qflash-eval")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eval.py",
        description="ImageNet Top-1/Top-5 of a timm vision transformer with fp16, I-ViT, QFlash integer attention or "
        "the peers (SageAttention, INT-FlashAttention, FP8), side by side on the same images. `eval.py compare "
        "A.json B.json` merges saved results; `eval.py diagnose -m MODEL --data DATA --mode MODES` says which "
        "attention layer and head lose accuracy.",
    )
    p.add_argument("--version", action="version", version=f"qflash-eval {version()}")
    p.add_argument("--preset", help="defaults from configs/presets.toml (smoke, paper); flags given here win")
    p.add_argument("--all", action="store_true", help="the paper's seven models (= --model paper)")
    p.add_argument("--pretrained", action="store_true", help="timm's pretrained weights (the default without --weights)")
    p.add_argument("--list-models", nargs="?", const="*", metavar="PATTERN",
                   help="print timm model names (a glob, default all) and whether the integer modes run each; "
                   "nothing is evaluated")
    p.add_argument("--list-modes", action="store_true",
                   help="print the attention modes: the built-in ones and those installed packages register under "
                   "the entry-point group qflash_eval.modes, with where each comes from")
    add_config_arguments(p)
    return p


def config_from_args(argv: Optional[list[str]]) -> RunConfig:
    """The flags given, over a --resume run's settings or a --preset, over RunConfig's defaults."""
    namespace = vars(build_parser().parse_args(argv))
    given = {name: namespace[name] for name in FIELD_NAMES if name in namespace}
    if namespace["all"]:
        if given.get("model"):
            raise ValueError("--all and --model both name the models: give one of them")
        given["model"] = PAPER_MODELS
    if namespace["pretrained"] and given.get("weights"):
        raise ValueError("--pretrained and --weights/--checkpoint both choose the weights: give one of them")
    config = RunConfig()
    if namespace["preset"]:
        config = config.overlay(preset(namespace["preset"]), f"preset {namespace['preset']}")
    if given.get("resume"):
        from .resume import settings_to_continue

        config = config.overlay(settings_to_continue(given["resume"], given), f"--resume {given['resume']}")
        given.setdefault("results", given["resume"])
    config = config.overlay(given, "flags")
    if not config.model:
        raise ValueError("--model is required (or a --preset that names one)")
    return config


def _late(module: str, function: str = "main"):
    """A subcommand's entry, imported when it runs (so that `eval.py --help` starts at once)."""
    import importlib

    return lambda: getattr(importlib.import_module(module, __package__), function)


SUBCOMMANDS = {
    "compare": lambda: compare_main, "diagnose": _late(".diagnose.command"), "sweep": _late(".sweep.command"),
    "fallback": _late(".fallback.command"), "--list-models": lambda: list_models_main,
    "--list-modes": lambda: list_modes_main,
}


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] and argv[0] in SUBCOMMANDS:
            return SUBCOMMANDS[argv[0]]()(argv[1:])
        return eval_main(argv)
    except KeyboardInterrupt:
        print("eval.py: interrupted", file=sys.stderr)
        return 130


def eval_main(argv: list[str]) -> int:
    try:
        config = config_from_args(argv)
    except ValueError as err:
        print(f"eval.py: error: {err}", file=sys.stderr)
        return 2
    from .attention_swap import UnsupportedAttentionError
    from .data import DataError
    from .hub import HubUnavailableError
    from .suite import evaluate_models

    try:
        return evaluate_models(config)
    except (ValueError, FileNotFoundError, DataError, HubUnavailableError, UnsupportedAttentionError,
            RuntimeError) as err:
        print(f"eval.py: error: {err}", file=sys.stderr)
        return 2


def list_models_main(argv: list[str]) -> int:
    from .swap.listing import list_models

    if len(argv) > 1:
        print("eval.py: error: --list-models takes one PATTERN (a glob such as 'swin*')", file=sys.stderr)
        return 2
    try:
        rows = list(list_models(argv[0] if argv else "*"))
    except ValueError as err:
        print(f"eval.py: error: {err}", file=sys.stderr)
        return 2
    width = max(len(r.name) for r in rows)
    for r in rows:
        print(f"{r.name:<{width}}  {'integer' if r.integer else 'no':<7}  {r.note}")
    print(f"{sum(r.integer for r in rows)} of {len(rows)} models run in the integer modes", file=sys.stderr)
    return 0


def list_modes_main(argv: list[str]) -> int:
    from .modes import GROUPS, MODES
    from .variants import ENTRY_POINT_GROUP, entry_point_modes

    if argv:
        print("eval.py: error: --list-modes takes no arguments", file=sys.stderr)
        return 2
    width = max(len(m) for m in MODES)
    for name, mode in MODES.items():
        print(f"{name:<{width}}  built-in  {mode.description}")
    for name, target in entry_point_modes().items():
        print(f"{name:<{width}}  entry point ({ENTRY_POINT_GROUP})  {target}")
    for name, members in GROUPS.items():
        print(f"{name:<{width}}  group     {', '.join(members)}")
    print(f"{'MODULE:FUNCTION':<{width}}  variant   any package.module:function or file.py:function "
          "(docs/variants.md)")
    return 0


def compare_main(argv: list[str]) -> int:
    from .compare import compare

    p = argparse.ArgumentParser(prog="eval.py compare", description="merge saved results into one table")
    p.add_argument("results", nargs="+", help="results JSON files written by eval.py")
    p.add_argument("--out", help="also write the Markdown table here")
    p.add_argument("--csv", help="also write the tidy CSV of every run here (one row per run and mode)")
    p.add_argument("--chart", help="also draw Top-1 and agreement of every run into this PNG")
    p.add_argument("--set", action="append", default=[], metavar="RUN=SET",
                   help="the evaluation set a run scored (clean, V2, Sketch, R, A), where its data does not say")
    p.add_argument("--robustness-chart", help="also draw the change from fp16 per evaluation set into this PNG")
    args = p.parse_args(argv)
    try:
        sets = _run_sets(args.set)
        table, warnings, named = compare(args.results, sets)
        for target in (args.out, args.csv, args.chart, args.robustness_chart):
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
    if args.robustness_chart:
        from .robustness import robustness_chart, robustness_rows

        png = robustness_chart(robustness_rows(named, sets)[0])
        if png is not None:
            atomic_write(pathlib.Path(args.robustness_chart), png)
    return 0


def _run_sets(pairs: list[str]) -> dict:
    """--set RUN=SET pairs as {run: set}; RUN is a results file's name without .json."""
    sets = {}
    for pair in pairs:
        run, _, name = pair.partition("=")
        if not run or not name:
            raise ValueError(f"--set {pair!r}: expected RUN=SET, for example sketch_run=Sketch")
        sets[pathlib.Path(run).stem if run.endswith(".json") else run] = name
    return sets
