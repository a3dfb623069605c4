"""The human-readable outputs: ``report.md`` and the console table, both from ``results.json``.

They read only the results document, so a report can be rebuilt from any saved results file,
local or from a device.
"""

from __future__ import annotations

from typing import Any


def _mb(size: int | None) -> str:
    if size is None:
        return "–"
    return f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def _top1(accuracy: dict[str, Any] | None) -> str:
    return "–" if not accuracy else f"{100 * accuracy['top1']:.2f}% (n={accuracy['n']})"


def _labels(doc: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["label"] for m in doc["models"]}


def _ratio(s: dict[str, Any]) -> str:
    low, high = s["ci95"]
    mark = "" if s["trustworthy"] else " ⚠"
    return f"{s['ratio']:.2f}× [{low:.2f}, {high:.2f}]{mark}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def headline(doc: dict[str, Any]) -> list[str]:
    """One sentence per batch for the main comparison (the first speed-up pair of each batch)."""
    labels, seen, lines = _labels(doc), set(), []
    for s in doc["speedups"]:
        if s["batch"] in seen:
            continue
        seen.add(s["batch"])
        low, high = s["ci95"]
        faster = "faster" if s["ratio"] >= 1 else "slower"
        factor = s["ratio"] if s["ratio"] >= 1 else 1 / s["ratio"]
        trust = "" if s["trustworthy"] else " — not trustworthy: " + str(s["warning"])
        lines.append(f"At batch {s['batch']}, {labels[s['candidate']]} ran {factor:.2f}× {faster} than "
                     f"{labels[s['baseline']]} (ratio of medians {s['ratio']:.2f}, "
                     f"95% CI {low:.2f}–{high:.2f}){trust}.")
    return lines


def render_markdown(doc: dict[str, Any], plot_file: str | None = "latency.png") -> str:
    """The report a person reads.

    Args:
        doc: a results document.
        plot_file: the plot's file name next to the report, or None for no plot.

    Returns:
        Markdown text.
    """
    model, settings, env = doc["export"]["model"], doc["settings"], doc["environment"]
    labels = _labels(doc)
    out = [f"# Benchmark: {model.get('name', '?')} on {settings['device']}", ""]
    out += [f"Export `{doc['export']['dir']}` (target {doc['export']['target']}), input "
            f"{doc['export']['input_shape']}, {settings['threads']} thread(s), {doc['created']}.", ""]
    out += headline(doc) + [""]
    for note in doc["notes"]:
        out.append(f"- {note}")
    if doc["notes"]:
        out.append("")

    out += ["## Latency", "", "Milliseconds per batch over the timed iterations; throughput at the median.", ""]
    rows = []
    for r in doc["results"]:
        lat = r["latency_ms"]
        rows.append([r["label"], str(r["batch"]), f"{lat['median']:.3f}", f"{lat['p90']:.3f}", f"{lat['p99']:.3f}",
                     f"{lat['mean']:.3f} ± {lat['std']:.3f}", f"{lat['min']:.3f}", f"{lat['max']:.3f}",
                     f"{r['throughput_ips']:.1f}", str(lat["n"]) + (" (noisy)" if r["noisy"] else "")])
    out += _table(["model", "batch", "median", "p90", "p99", "mean ± std", "min", "max", "images/s", "n"], rows)

    if doc["speedups"]:
        out += ["", "## Speed-up", "",
                "Ratio of median latencies with a bootstrap 95% confidence interval; ⚠ marks a ratio that is not "
                "trustworthy (see Warnings).", ""]
        rows = [[str(s["batch"]), labels[s["candidate"]], labels[s["baseline"]], _ratio(s)] for s in doc["speedups"]]
        out += _table(["batch", "model", "over", "speed-up [95% CI]"], rows)

    out += ["", "## Models", ""]
    rows = []
    for m in doc["models"]:
        placement = (m.get("info") or {}).get("placement")
        layers = "–" if not placement else f"{placement['int8_layers']} int8 / {placement['float_layers']} float"
        rows.append([m["label"], m["runtime"], m["precision_requested"], m["precision_ran"], _top1(m["accuracy"]),
                     _mb(m["model_bytes"]), layers])
    out += _table(["model", "runtime", "requested", "ran", "top-1", "size on disk", "weighted layers"], rows)
    if settings["data"]:
        out += ["", f"Inputs and accuracy: test split of `{settings['data']}`."]
    else:
        out += ["", "Inputs: standard-normal noise (no --data, so no accuracy)."]

    if doc["warnings"]:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in doc["warnings"]]
    if plot_file:
        out += ["", "## Latency distributions", "", f"![per-iteration latency]({plot_file})"]

    out += ["", "## Settings and environment", ""]
    cpu = env["cpu"]
    isa = cpu.get("isa") or {}
    flags = ", ".join(flag for flag, present in isa.items() if present) or "unknown"
    iters = (f"{settings['iters']} timed iterations" if settings["iters"]
             else f"{settings['duration_s']} s of timed rounds")
    out += [
        f"- Timing: {settings['warmup_iters']} warm-up iterations, then {iters} per model and batch, in rounds of "
        f"{settings['round_iters']} iterations alternating between models; seed {settings['seed']}.",
        f"- CPU: {cpu.get('model')} ({cpu.get('architecture')}), {cpu.get('physical_cores')} physical / "
        f"{cpu.get('logical_cores')} logical cores; ISA: {flags}.",
        f"- Load average (1/5/15 min) at the end: {env.get('load_average') or 'unknown'} on "
        f"{cpu.get('logical_cores')} logical cores.",
        f"- OS: {env['os']}; Python {env['python']}; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v) + ".",
        f"- sqakd-edge commit: {env.get('git_commit') or 'unknown (not a git checkout)'}"
        + (" (with uncommitted changes)" if env.get("git_dirty") else "") + ".",
    ]
    if doc["device"]:
        out.append("- Device: " + ", ".join(f"{k}: {v}" for k, v in doc["device"].items() if not isinstance(v, dict)))
    if doc["command"]:
        out.append(f"- Command: `{' '.join(doc['command'])}`")
    return "\n".join(out) + "\n"


def render_console(doc: dict[str, Any]) -> str:
    """A compact plain-text table for the terminal."""
    header = f"{'model':<34} {'batch':>5} {'median ms':>10} {'p90 ms':>9} {'p99 ms':>9} {'images/s':>10} {'top-1':>8}"
    lines = [header, "-" * len(header)]
    accuracy = {m["name"]: m["accuracy"] for m in doc["models"]}
    for r in doc["results"]:
        lat, acc = r["latency_ms"], accuracy.get(r["name"])
        top = f"{100 * acc['top1']:.2f}%" if acc else "–"
        lines.append(f"{r['label']:<34} {r['batch']:>5} {lat['median']:>10.3f} {lat['p90']:>9.3f} {lat['p99']:>9.3f} "
                     f"{r['throughput_ips']:>10.1f} {top:>8}")
    labels = _labels(doc)
    if doc["speedups"]:
        lines.append("")
        for s in doc["speedups"]:
            lines.append(f"batch {s['batch']:>3}: {labels[s['candidate']]} over {labels[s['baseline']]}: {_ratio(s)}")
    for warning in doc["warnings"]:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)
