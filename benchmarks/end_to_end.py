"""eval.py end to end, as a user runs it: N local images (links to the sample set), one fresh process per run,
eager and with CUDA graphs, each first with an empty Triton cache (a new machine) and then with the cache it
filled. Reports images/s overall with start-up included (process wall time, imports and all), the run's own
timing (first batch, warm-up per mode, waiting for data, model time) and images/s per mode.

`python -m benchmarks.end_to_end --images 13000 --out results/end_to_end` (on CUDA; on CPU use a few images).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "datasets" / "imagenet-sample"
WEIGHTS = REPO.parent / "shared" / "weights" / "deit_tiny_patch16_224.safetensors"


def link_farm(source: pathlib.Path, images: int, folder: pathlib.Path) -> int:
    """`images` links to the JPEGs of `source`, cycling through them (names keep the wnid prefix)."""
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if not files:
        raise SystemExit(f"no images in {source}")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        src = files[i % len(files)]
        (folder / f"{src.stem}_{i // len(files)}{src.suffix}").symlink_to(src.resolve())
    return images


def one_run(args, data: pathlib.Path, out: pathlib.Path, graphs: bool, cache: pathlib.Path, label: str) -> dict:
    results = out / f"{label}.json"
    cmd = [sys.executable, str(REPO / "eval.py"), "-m", args.model, "--checkpoint", str(args.checkpoint),
           "--data", str(data), "--mode", args.mode, "-b", str(args.batch_size), "-j", str(args.workers),
           "--no-progress", "--overwrite", "--results", str(results)] + (["--cuda-graphs"] if graphs else ["--no-cuda-graphs"])
    env = dict(os.environ, TRITON_CACHE_DIR=str(cache))
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{label}: eval.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(results.read_text())
    timing = report["timing"]
    return {
        "run": label, "cuda_graphs": graphs, "triton_cache": "cold" if "cold" in label else "warm",
        "images": args.images, "process_wall_s": round(wall, 2), "overall_images_per_s": round(args.images / wall, 1),
        "start_up_s": round(wall - timing["wall_s"] + timing["first_batch_wait_s"] + sum(timing["warmup_s"].values()), 2),
        # before the loop: imports (interpreter, torch, timm) and preparing (model, copies on the device)
        "imports_s": round(timing["process_age_at_loop_start_s"] - timing["prepare_s"], 2),
        "after_loop_s": round(wall - timing["process_age_at_loop_start_s"] - timing["wall_s"], 2),
        "timing": timing, "images_per_s": {m: r["images_per_s"] for m, r in report["results"].items()},
        "provenance": report["provenance"], "command": " ".join(cmd),
    }


def table(rows: list[dict]) -> str:
    modes = list(rows[0]["images_per_s"])
    head = ["run", "process wall s", "overall img/s", "start-up s", "imports s", "prepare s (steps)", "first batch s",
            "warm-up s (per mode)", "report s",
            "data wait s", "model s"] + [f"{m} img/s" for m in modes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t = r["timing"]
        warm = ", ".join(f"{m} {s:.2f}" for m, s in t["warmup_s"].items())
        steps = ", ".join(f"{k.removesuffix('_s')} {s:.2f}" for k, s in t.get("prepare_steps_s", {}).items())
        cells = [r["run"], f"{r['process_wall_s']:.1f}", f"{r['overall_images_per_s']:.0f}", f"{r['start_up_s']:.1f}",
                 f"{r['imports_s']:.2f}", f"{t['prepare_s']:.2f} ({steps})", f"{t['first_batch_wait_s']:.2f}", warm,
                 f"{r['after_loop_s']:.2f}", f"{t['data_wait_s']:.2f}", f"{t['model_s']:.2f}"]
        lines.append("| " + " | ".join(cells + [f"{r['images_per_s'][m]:.0f}" for m in modes]) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=13000)
    p.add_argument("--model", default="DeiT-T")
    p.add_argument("--checkpoint", type=pathlib.Path, default=WEIGHTS)
    p.add_argument("--source", type=pathlib.Path, default=SAMPLE, help="folder of JPEGs the links point to")
    p.add_argument("--mode", default="all")
    p.add_argument("-b", "--batch-size", type=int, default=256)
    p.add_argument("-j", "--workers", type=int, default=15)
    p.add_argument("--runs", default="eager,graphs", help="comma list of eager, graphs")
    p.add_argument("--out", type=pathlib.Path, default=REPO / "results" / "end_to_end")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = pathlib.Path(tmp) / "images"
        link_farm(args.source, args.images, data)
        for kind in [r for r in args.runs.split(",") if r]:
            cache = pathlib.Path(tmp) / f"triton-cache-{kind}"  # empty for the cold run, filled for the warm one
            for temperature in ("cold", "warm"):
                rows.append(one_run(args, data, args.out, kind == "graphs", cache, f"{kind}-{temperature}"))
                print(table(rows[-1:]), flush=True)
                (args.out / "end_to_end.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    text = table(rows)
    (args.out / "end_to_end.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
