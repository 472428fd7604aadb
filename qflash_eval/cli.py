"""Command line: `python eval.py --model vit_base --mode qflash`, and `python eval.py compare A.json B.json`."""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import pathlib
import sys
from typing import Optional

import torch

from . import report as rep
from .attention_swap import (
    MODE_DESCRIPTIONS, MODES, AttentionConfig, UnsupportedAttentionError, calibrate_static, swap_attention,
)
from .config import preset
from .data import DEFAULT_HUB_DATASET, DataError, make_loader, open_source
from .evaluate import ModeModel, evaluate
from .graphs import GraphedForward
from .hub import HubUnavailableError
from .models import create_model

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
ALL_MODES = ["fp32", "fp16", "ivit", "qflash"]


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
    p.add_argument("--dtype", choices=sorted(DTYPES),
                   help="model dtype of the integer modes (default float16; fp32/fp16 modes are what they say)")
    p.add_argument("--qflash-backend", choices=["auto", "triton", "reference"],
                   help="auto: the Triton kernel on CUDA, the bit-exact PyTorch reference on CPU")
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


def parse_modes(text: str, with_reference: bool) -> list[str]:
    modes = ALL_MODES if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"unknown mode {', '.join(unknown) or repr(text)}; choose from {', '.join(MODES)} or all")
    if with_reference and "fp16" not in modes:
        modes = ["fp16"] + modes
    return list(dict.fromkeys(modes))


def mode_dtype(mode: str, integer_dtype: torch.dtype) -> torch.dtype:
    return {"fp32": torch.float32, "fp16": torch.float16}.get(mode, integer_dtype)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        return compare_main(argv[1:])
    try:
        return run(resolve_args(argv))
    except (ValueError, FileNotFoundError, DataError, HubUnavailableError, UnsupportedAttentionError,
            RuntimeError) as err:
        print(f"eval.py: error: {err}", file=sys.stderr)
        return 2


def compare_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="eval.py compare", description="merge saved results into one table")
    p.add_argument("results", nargs="+", help="results JSON files written by eval.py")
    p.add_argument("--out", help="also write the Markdown table here")
    args = p.parse_args(argv)
    try:
        table = rep.compare(args.results)
    except ValueError as err:
        print(f"eval.py compare: error: {err}", file=sys.stderr)
        return 2
    print(table)
    if args.out:
        pathlib.Path(args.out).write_text(table + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    from accelerate import Accelerator
    from accelerate.utils import gather_object

    modes = parse_modes(args.mode, with_reference=not args.no_fp16_reference)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is visible")
    if args.cuda_graphs and (args.device == "cpu" or not torch.cuda.is_available()):
        raise RuntimeError("--cuda-graphs needs a CUDA device; this run is on the CPU")
    accelerator = Accelerator(cpu=args.device == "cpu")
    device = accelerator.device
    integer_dtype = DTYPES[args.dtype]

    loaded = create_model(args.model, args.weights)
    source = open_source(args.data, args.split, args.num_samples)

    import timm.data

    data_config = timm.data.resolve_data_config({}, model=loaded.model)
    transform = timm.data.create_transform(**data_config)
    mode_models = []
    for mode in modes:
        model = copy.deepcopy(loaded.model)
        config = AttentionConfig(mode, args.granularity, args.ivit_bits, args.qflash_backend)
        replaced = swap_attention(model, config)
        dtype = mode_dtype(mode, integer_dtype)
        model = model.to(device=device, dtype=dtype).eval()
        mode_models.append(ModeModel(mode, model, dtype, replaced, GraphedForward(model) if args.cuda_graphs else None))
    del loaded.model

    calibration = None
    if args.granularity == "static" and any(m.replaced for m in mode_models):
        calibration = _calibrate(mode_models, source, transform, args, device)

    loader = make_loader(source, transform, args.batch_size, args.workers, accelerator.process_index,
                         accelerator.num_processes, pin=device.type == "cuda")
    progress = None
    if accelerator.is_main_process and not args.no_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=source.size, unit="img", desc=f"{args.model} {','.join(modes)}", dynamic_ncols=True)
    outcome, interrupted = evaluate(mode_models, loader, device, progress)
    if progress is not None:
        progress.close()

    rows = gather_object(outcome.rows())
    # slowest process counts: [model seconds per mode..., wall, data wait, first batch]
    seconds = torch.cat([outcome.seconds, outcome.warmup_seconds, torch.tensor(
        [outcome.wall_seconds, outcome.data_wait_seconds, outcome.first_batch_seconds], dtype=torch.float64)])
    seconds = seconds.to(device)
    seconds = accelerator.reduce(seconds, reduction="max") if accelerator.num_processes > 1 else seconds
    seconds = seconds.cpu().tolist()
    seconds, warmup, (wall, data_wait, first_batch) = seconds[:len(modes)], seconds[len(modes):2 * len(modes)], \
        seconds[2 * len(modes):]
    interrupted = bool(gather_object([interrupted]).count(True)) if accelerator.num_processes > 1 else interrupted
    try:
        if not accelerator.is_main_process:
            return 0
        indices = [r[0] for r in rows]
        if len(set(indices)) != len(indices):
            raise RuntimeError("an image was evaluated twice across processes: data sharding is broken")
        if not interrupted and source.size is not None and len(rows) != source.size:
            raise RuntimeError(f"evaluated {len(rows)} images but the source holds {source.size}")

        report = build_report(args, loaded, source, mode_models, rows, seconds, device,
                              accelerator.num_processes, interrupted, calibration)
        report["timing"] = rep.timing(len(rows), wall, data_wait, first_batch, seconds, dict(zip(modes, warmup)))
        report["data"]["transform"] = {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()}
        json_path = pathlib.Path(args.results) if args.results else default_results_path(args.model)
        files = rep.write_outputs(report, json_path, rows)
        print(rep.markdown(report))
        print("written: " + ", ".join(str(f) for f in files))
        return 130 if interrupted else 0
    finally:
        if accelerator.num_processes > 1:
            # every process leaves together, once the report is written (or has failed), and closes the
            # process group itself: a process that exited with it open aborted in its teardown once
            # (gloo on CPU, under load). CPU runs call the barrier directly: accelerate's names the
            # process's CUDA device, which does not exist on a host with fewer GPUs than processes.
            if device.type == "cpu":
                torch.distributed.barrier()
            else:
                accelerator.wait_for_everyone()
            torch.distributed.destroy_process_group()


def _calibrate(mode_models, source, transform, args, device) -> dict:
    n = min(args.calibration_images, source.size or args.calibration_images)
    loader = make_loader(source, transform, args.batch_size, 0)
    batches, taken = [], 0
    for images, _, _ in loader:
        batches.append(images)
        taken += images.shape[0]
        if taken >= n:
            break
    images = torch.cat(batches)[:n].to(device)
    for m in mode_models:
        if m.replaced:
            calibrate_static(m.model, images.to(m.dtype).split(args.batch_size))
    return {"images": int(images.shape[0]), "source": "the first images of the evaluation data"}


def default_results_path(model: str) -> pathlib.Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("results") / f"{model}-{stamp}.json"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def build_report(args, loaded, source, mode_models, rows, seconds, device, world, interrupted, calibration):
    from qflash_kernels import KEY_TILE, resolve_backend

    modes = [m.mode for m in mode_models]
    results = rep.summarize(modes, rows, seconds)
    for m in mode_models:
        entry = results[m.mode]
        entry["dtype"] = str(m.dtype).replace("torch.", "")
        entry["attention"] = MODE_DESCRIPTIONS[m.mode]
        entry["attention_modules_replaced"] = m.replaced
        if m.mode == "qflash":
            entry["backend"] = resolve_backend(args.qflash_backend, device)
            entry["key_tile"] = KEY_TILE
        if m.mode == "ivit":
            entry["output_bits"] = args.ivit_bits
        entry["cuda_graphs"] = m.graphed.describe() if m.graphed is not None else None
    alias = loaded.alias
    return {
        "model": args.model,
        "timm_name": loaded.timm_name,
        "weights": loaded.weights,
        "weights_sha256": loaded.weights_sha256,
        "paper_top1": {"fp32": alias.paper_fp32_top1, "qflash": alias.paper_qflash_top1} if alias else None,
        "data": {"source": source.describe(), "count": len(rows), "requested": args.num_samples},
        "granularity": args.granularity,
        "calibration": calibration,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "cuda_graphs": bool(args.cuda_graphs),
        "interrupted": interrupted,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "eval.py " + " ".join(sys.argv[1:]),
        "provenance": rep.provenance(device_name(device), world),
        "results": results,
    }
