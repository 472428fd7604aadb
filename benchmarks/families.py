"""Images/s of every supported family's smallest model (random weights, float16, batch 256 by default) in fp16
and qflash, eager and replayed from a CUDA graph, with energy per image of the replay: one row per family
and mode. `python -m benchmarks.families --out results/families` on a CUDA GPU."""
from __future__ import annotations

import argparse
import copy
import json
import pathlib

import torch

from qflash_eval.attention_swap import AttentionConfig, swap_attention
from qflash_eval.families import SUPPORTED_FAMILIES
from qflash_eval.provenance import provenance

from .energy import EnergyMeter
from .timing import cuda_graph_replay, median_ms

MODES = ("fp16", "qflash")


def bench_family(family: str, model_name: str, batch: int, meter: EnergyMeter) -> list[dict]:
    import timm

    base = timm.create_model(model_name, pretrained=False).eval()
    x = torch.randn(batch, *base.pretrained_cfg["input_size"], device="cuda").half()
    rows, fp16 = [], {}
    for mode in MODES:
        model = copy.deepcopy(base)
        swapped = swap_attention(model, AttentionConfig(mode))
        model = model.cuda().half()
        with torch.inference_mode():
            timings = {"eager": median_ms(lambda: model(x), warmup=3, rep=20)}
            replay = cuda_graph_replay(lambda: model(x))
            timings["cuda_graph"] = median_ms(replay, warmup=3, rep=20)
            energy = meter.per_call_mj(replay) / batch if meter.available else None
        for launch, ms in timings.items():
            if mode == "fp16":
                fp16[launch] = ms
            rows.append({"family": family, "model": model_name, "mode": mode, "swapped": swapped, "launch": launch,
                         "batch": batch, "ms": ms, "images_per_s": batch / ms * 1e3, "vs_fp16": fp16[launch] / ms,
                         "mj_per_image": energy if launch == "cuda_graph" else None})
        print(family, mode, {k: round(batch / v * 1e3) for k, v in timings.items()}, "img/s", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| family | model | mode | eager img/s | graph img/s | graph vs fp16 | mJ / image |", "|---" * 7 + "|"]
    by = {(r["family"], r["mode"], r["launch"]): r for r in rows}
    for family, model_name in SUPPORTED_FAMILIES.items():
        for mode in MODES:
            e, g = by.get((family, mode, "eager")), by.get((family, mode, "cuda_graph"))
            if e is None:
                continue
            mj = f"{g['mj_per_image']:.2f}" if g["mj_per_image"] is not None else "-"
            lines.append(f"| {family} | {model_name} | {mode} | {e['images_per_s']:.0f} | {g['images_per_s']:.0f} | "
                         f"{g['vs_fp16']:.2f} | {mj} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="results/families")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--families", default=",".join(SUPPORTED_FAMILIES), help="comma list of family names")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("the benchmark needs a CUDA GPU")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meter = EnergyMeter(torch.cuda.current_device())
    rows = []
    for family in [f for f in args.families.split(",") if f]:
        try:
            rows += bench_family(family, SUPPORTED_FAMILIES[family], args.batch, meter)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
            print(f"{family}: not measured: {str(err)[:200]}", flush=True)
        (out / "families.json").write_text(json.dumps(
            {"provenance": provenance(torch.cuda.get_device_name(), 1), "rows": rows}, indent=2) + "\n")
    text = table(rows)
    (out / "families.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
