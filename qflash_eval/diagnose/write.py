"""The diagnosis as JSON (everything), Markdown (the worst cells and a layer x mode table) and PNG (a
layers x heads SQNR heatmap per mode and the propagated SQNR by depth)."""
from __future__ import annotations

import io
import json
import pathlib

from ..outputs import atomic_write


def markdown(report: dict) -> str:
    modes = list(report["modes"])
    lines = [f"**{report['model']}** ({report['weights']}), {report['data']['source']} ({report['images']} images), "
             f"granularity {report['granularity']}, {report['dtype']}, {report['provenance']['device']}", "",
             "Worst head per mode (teacher-forced: the fp16 model's own q, k, v at that layer):", "",
             "| mode | worst layer | class | head | SQNR dB | cosine | KL | flushed % | last block SQNR dB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mode in modes:
        m = report["modes"][mode]
        w = m["worst"]
        cell = m["layers"][w["layer"]]
        kl = f"{cell['kl'][w['head']]:.2e}" if "kl" in cell else "-"
        flushed = f"{100 * cell['flushed'][w['head']]:.2f}" if "flushed" in cell else "-"
        last = f"{m['propagated_sqnr_db'][-1]:.1f}" if m["propagated_sqnr_db"] else "-"
        lines.append(f"| {mode} | {w['layer']} | {cell['class']} | {w['head']} | {w['sqnr_db']:.1f} | "
                     f"{cell['cosine'][w['head']]:.5f} | {kl} | {flushed} | {last} |")
    lines += ["", "Mean SQNR over heads (dB) by layer, and the layer's per-image max|q|, max|k|, max|v| (mean over "
              "images):", "", "| layer | class | " + " | ".join(modes) + " | amax q | amax k | amax v |",
              "|---|---|" + "---|" * (len(modes) + 3)]
    for index, name in enumerate(report["layers"]):
        cells = [sum(report["modes"][m]["layers"][index]["sqnr_db"]) / len(report["modes"][m]["layers"][index]["sqnr_db"])
                 for m in modes]
        amax = [report["scales"][index][t]["mean"] for t in ("q", "k", "v")]
        lines.append(f"| {index} | {name} | " + " | ".join(f"{c:.1f}" for c in cells) + " | "
                     + " | ".join(f"{a:.3g}" for a in amax) + " |")
    return "\n".join(lines) + "\n"


def chart(report: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    modes = list(report["modes"])
    fig, axes = plt.subplots(1, len(modes) + 1, figsize=(2.6 * (len(modes) + 1), 4.0), squeeze=False,
                             constrained_layout=True)
    heads = max(len(c["sqnr_db"]) for m in modes for c in report["modes"][m]["layers"])
    grids = {m: np.full((len(report["layers"]), heads), np.nan) for m in modes}
    for m in modes:
        for c in report["modes"][m]["layers"]:
            grids[m][c["layer"], :len(c["sqnr_db"])] = c["sqnr_db"]
    low = np.nanmin([np.nanmin(g) for g in grids.values()])
    high = np.nanmax([np.nanmax(g) for g in grids.values()])
    for ax, m in zip(axes[0], modes):
        image = ax.imshow(grids[m], aspect="auto", cmap="viridis", vmin=low, vmax=high)
        ax.set_title(f"{m}: SQNR dB")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
    fig.colorbar(image, ax=axes[0][len(modes) - 1], shrink=0.8)
    depth_ax = axes[0][-1]
    for m in modes:
        depth_ax.plot(report["modes"][m]["propagated_sqnr_db"], marker=".", label=m)
    depth_ax.set_title("blocks vs fp16")
    depth_ax.set_xlabel("block")
    depth_ax.set_ylabel("SQNR dB")
    depth_ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write(report: dict, json_path: pathlib.Path) -> list[pathlib.Path]:
    """name.md and name.png beside name.json, the JSON last (it is the record)."""
    stem = json_path.with_suffix("")
    md, png = stem.with_suffix(".md"), stem.with_suffix(".png")
    atomic_write(md, markdown(report))
    atomic_write(png, chart(report))
    atomic_write(json_path, json.dumps(report, indent=2) + "\n")
    return [json_path, md, png]
