"""Plot ``benchmarks/train_step.py`` results: each kind's step as a multiple of the float step, run against run.

One panel per (batch, threads); per kind one bar for each results file given, in the order given (e.g. before
and after a change), with the issue's targets drawn as lines. A file's bars use its ``fit_step_s`` ratio: the
step as ``fit`` runs it, EWGS updates amortised.

    python benchmarks/plot_train_step.py LABEL=RESULTS.json [LABEL=RESULTS.json ...] --out PLOT.png
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

TARGETS = ((1.2, "1.2x: LSQ target"), (1.3, "1.3x: EWGS target"))


def load(spec: str) -> tuple[str, dict[tuple[int, int], dict[str, float]]]:
    """``LABEL=PATH`` (or a bare path, labelled by its file name) -> (label, {(batch, threads): {kind: ratio}})."""
    label, _, path = spec.rpartition("=")
    doc = json.loads(Path(path).read_text())
    fp32 = {(r["batch"], r["threads"]): r["fit_step_s"] for r in doc["rows"] if r["kind"] == "fp32"}
    ratios: dict[tuple[int, int], dict[str, float]] = {}
    for r in doc["rows"]:
        key = (r["batch"], r["threads"])
        if r["kind"] != "fp32" and key in fp32:
            ratios.setdefault(key, {})[r["kind"]] = r["fit_step_s"] / fp32[key]
    return label or Path(path).stem, ratios


def plot(runs: list[tuple[str, dict[tuple[int, int], dict[str, float]]]], out: Path, title: str) -> None:
    """Grouped horizontal bars, one panel per (batch, threads) that every run measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted(set.intersection(*(set(r) for _, r in runs)), key=lambda k: (k[1], k[0]))
    if not panels:
        raise SystemExit("error: the results files share no (batch, threads) setting; nothing to compare")
    kinds: list[str] = []
    for _, ratios in runs:
        for key in panels:
            kinds += [k for k in ratios[key] if k not in kinds]
    height = 0.8 / len(runs)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 0.45 * len(kinds) * len(runs) + 1.6),
                             sharey=True, squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        for i, (label, ratios) in enumerate(runs):
            ys = [k for k in range(len(kinds)) if kinds[k] in ratios[key]]
            values = [ratios[key][kinds[k]] for k in ys]
            bars = ax.barh([y + (i - (len(runs) - 1) / 2) * height for y in ys], values, height=height, label=label)
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        for (value, name), style in zip(TARGETS, ("--", ":"), strict=True):
            ax.axvline(value, linestyle=style, linewidth=1, color="gray", label=name)
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_title(f"batch {key[0]}, {key[1]} thread{'s' if key[1] > 1 else ''}")
        ax.set_xlabel("step / float step")
        ax.set_xlim(0.95, max(max(r[key].values()) for _, r in runs) + 0.12)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(kinds)), kinds)
    axes[0][0].set_ylim(len(kinds) - 0.5, -0.5)
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="LABEL=RESULTS.json from benchmarks/train_step.py")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--title", default="SQAKD training step vs the float step (ResNet-20, W4A4, CPU)")
    args = parser.parse_args(argv)
    runs: list[tuple[str, Any]] = []
    for spec in args.results:
        try:
            runs.append(load(spec))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"{spec}: not a train_step.py results file ({type(exc).__name__}: {exc})")
    plot(runs, Path(args.out), args.title)


if __name__ == "__main__":
    main()
