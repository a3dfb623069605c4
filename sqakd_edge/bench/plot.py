"""``latency.png``: per-iteration latency distributions per model and batch, and the speed-ups.

One row per batch size: the distribution of every model's per-iteration latency (box and the
individual iterations), the latency of each iteration in run order (drift and alternation show
there), and the speed-ups with their 95% intervals. matplotlib is imported here only, with the
Agg backend, so no display is needed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import require


def render_png(doc: dict[str, Any]) -> bytes:
    """Draw the figure for a results document and return it as PNG bytes."""
    matplotlib = require("matplotlib", "the latency plot", "pip install matplotlib")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    batches = doc["settings"]["batches"]
    names = [m["name"] for m in doc["models"]]
    labels = {m["name"]: m["label"] for m in doc["models"]}
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}
    rows = len(batches)
    fig, axes = plt.subplots(rows, 3, figsize=(15, 4.2 * rows), squeeze=False,
                             gridspec_kw={"width_ratios": [1.3, 1.3, 1.0]})
    rng = np.random.default_rng(0)
    for row, batch in enumerate(batches):
        results = [r for r in doc["results"] if r["batch"] == batch]
        ax_box, ax_series, ax_ratio = axes[row]
        samples = [np.asarray(r["samples_ms"]) for r in results]
        # A few stalls (a page fault, another process) would squash the plot; the axis stops a little
        # above the largest p99 and says how many iterations lie beyond it.
        top = 1.15 * max(float(np.percentile(v, 99)) for v in samples)
        bottom = 0.9 * min(float(v.min()) for v in samples)
        hidden = sum(int((v > top).sum()) for v in samples)
        box = ax_box.boxplot(samples, showfliers=False, patch_artist=True, widths=0.5,
                             medianprops={"color": "black", "lw": 1.5})
        for patch, r in zip(box["boxes"], results, strict=True):
            patch.set_facecolor((*colours[r["name"]][:3], 0.25))
            patch.set_edgecolor(colours[r["name"]])
        for i, (values, r) in enumerate(zip(samples, results, strict=True), start=1):
            jitter = rng.uniform(-0.18, 0.18, size=len(values))
            ax_box.scatter(i + jitter, np.minimum(values, top), s=6, alpha=0.4, color=colours[r["name"]], linewidths=0)
        ax_box.set_xticks(range(1, len(results) + 1),
                          [f"{r['label']}\nmedian {r['latency_ms']['median']:.3g} ms" for r in results], fontsize=8)
        # Stalls of another order of magnitude (a busy machine) would crush the boxes: use a log axis then.
        scale = "log" if top / bottom > 8 else "linear"
        ax_box.set_yscale(scale)
        ax_box.set_ylim(bottom, top)
        ax_box.set_ylabel("latency per batch (ms)" + (", log scale" if scale == "log" else ""))
        beyond = f" ({hidden} above the axis, drawn at its top)" if hidden else ""
        ax_box.set_title(f"batch {batch}: per-iteration latency{beyond}", fontsize=10)
        ax_box.grid(axis="y", alpha=0.3)

        for r, values in zip(results, samples, strict=True):
            ax_series.plot(np.arange(1, len(values) + 1), np.minimum(values, top), ".", ms=3, alpha=0.6,
                           color=colours[r["name"]], label=r["label"])
        ax_series.set_yscale(scale)
        ax_series.set_ylim(bottom, top)
        ax_series.set_xlabel("timed iteration of each model (run order)")
        ax_series.set_ylabel("ms")
        ax_series.set_title(f"batch {batch}: latency over the run")
        ax_series.grid(alpha=0.3)
        ax_series.legend(fontsize=7, loc="upper right", markerscale=3)

        speedups = [s for s in doc["speedups"] if s["batch"] == batch]
        for y, s in enumerate(speedups):
            low, high = s["ci95"]
            ax_ratio.errorbar(s["ratio"], y, xerr=[[s["ratio"] - low], [high - s["ratio"]]], fmt="o", capsize=4,
                              color=colours[s["candidate"]] if s["trustworthy"] else "grey")
            ax_ratio.annotate(f"{s['ratio']:.2f}×" + ("" if s["trustworthy"] else " (untrusted)"), (s["ratio"], y),
                              xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8)
        ax_ratio.axvline(1.0, color="black", lw=0.8, ls="--")
        ax_ratio.set_yticks(range(len(speedups)),
                            [f"{labels[s['candidate']]}\nover {labels[s['baseline']]}" for s in speedups], fontsize=7)
        ax_ratio.set_ylim(-0.7, max(len(speedups), 1) - 0.3)
        highest = max([s["ci95"][1] for s in speedups] + [1.0])
        ax_ratio.set_xlim(0, 1.2 * highest)
        ax_ratio.set_xlabel("speed-up (ratio of medians, 95% CI)")
        ax_ratio.set_title(f"batch {batch}: speed-up")
        ax_ratio.grid(axis="x", alpha=0.3)
    model = doc["export"]["model"].get("name", "?")
    fig.suptitle(f"{model} on {doc['settings']['device']}, {doc['settings']['threads']} thread(s)", fontsize=12)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def write_plot(doc: dict[str, Any], path: Path) -> Path:
    """Render the figure and write it atomically to ``path``."""
    return atomic_write_bytes(path, render_png(doc))
