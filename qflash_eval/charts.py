"""The chart beside every report: Top-1 per mode with its 95 % Wilson interval, and agreement with fp16.

Several reports (compare, the paper table) become groups of bars, one group per run or model.
"""
from __future__ import annotations

import io
from typing import Optional

from .modes import REFERENCE_MODE
from .stats import wilson_interval


def _label(report: dict, several: bool) -> str:
    return report.get("model", "?") if several else f"{report.get('model', '?')} ({report['data']['count']} images)"


def accuracy_chart(reports: list[dict], labels: Optional[list[str]] = None) -> Optional[bytes]:
    """PNG bytes, or None when there is nothing to draw."""
    reports = [r for r in reports if r.get("results")]
    if not reports:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or [_label(r, len(reports) > 1) for r in reports]
    modes = list(dict.fromkeys(m for r in reports for m in r["results"]))
    width = 0.8 / len(modes)
    lows = []  # lower interval ends and paper numbers: the Top-1 axis shows all of them
    fig, (top1_ax, agree_ax) = plt.subplots(2, 1, figsize=(max(6.0, 1.4 * len(reports) * len(modes) / 2 + 3), 7),
                                            sharex=True)
    for j, mode in enumerate(modes):
        xs, top1, err_lo, err_hi, agree = [], [], [], [], []
        for i, r in enumerate(reports):
            entry = r["results"].get(mode)
            if not entry or not entry.get("count"):
                continue
            n, k = entry["count"], entry["correct_top1"]
            lo, hi = wilson_interval(k, n)
            xs.append(i + (j - (len(modes) - 1) / 2) * width)
            top1.append(entry["top1"])
            err_lo.append(max(0.0, entry["top1"] - 100 * lo))
            err_hi.append(max(0.0, 100 * hi - entry["top1"]))
            agree.append(entry.get("agreement"))
        top1_ax.bar(xs, top1, width, yerr=[err_lo, err_hi], capsize=3, label=mode, color=f"C{j}")
        lows.extend(t - e for t, e in zip(top1, err_lo))
        if mode != REFERENCE_MODE:
            agree_x = [x for x, a in zip(xs, agree) if a is not None]
            agree_ax.bar(agree_x, [a for a in agree if a is not None], width, label=mode, color=f"C{j}")
    for i, r in enumerate(reports):
        paper = r.get("paper_top1") or {}
        for key, style in (("fp32", "--"), ("qflash", ":")):
            if paper.get(key) is not None:
                top1_ax.hlines(paper[key], i - 0.45, i + 0.45, colors="k", linestyles=style, linewidth=1)
                lows.append(paper[key])
    top1_ax.set_ylabel("Top-1 % (95 % Wilson interval)")
    top1_ax.set_title("ImageNet Top-1 by attention mode" + (" (dashed: paper FP32, dotted: paper QFlash)"
                                                           if any(r.get("paper_top1") for r in reports) else ""),
                      fontsize=10)
    if lows:
        top1_ax.set_ylim(max(0.0, min(lows) - 3), 100.0)
    agree_ax.set_ylabel("agreement with fp16 %")
    agree_ax.set_ylim(max(0.0, min([a for r in reports for a in
                                    [e.get("agreement") for e in r["results"].values()] if a is not None] or [0]) - 5), 100.5)
    agree_ax.set_xticks(range(len(reports)))
    agree_ax.set_xticklabels(labels, rotation=20 if len(reports) > 3 else 0, ha="right" if len(reports) > 3 else "center")
    top1_ax.legend(fontsize=8, ncol=min(len(modes), 5), loc="upper center", bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (tight layout, 120 dpi), the figure closed."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()

