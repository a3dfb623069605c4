"""The paper's claim on real data: SQAKD (no labels) vs CE-QAT (labels) for every quantizer family and low bits.

One converged float teacher (ResNet-20 on the full Fashion-MNIST, committed under ``benchmarks/teachers/``
with its recipe and hash) supervises every student. The grid is quantizer family {PACT, LSQ, DoReFa,
interval + EWGS} x bits {W2A2, W3A3, W4A4} (plus W8A8 for LSQ and interval) x method {CE-QAT: cross-entropy on
labels, SQAKD: KL to the teacher, no labels}, every student starting from the teacher's weights with the same
budget and recipe; per family and bits, a post-training baseline (PTQ: the quantizers initialised on one
calibration batch, exactly as training starts, and no training) shows what QAT buys.

Each student's test accuracy is measured after every epoch, so two numbers are reported for SQAKD: the
checkpoint chosen by the held-out KL (label-free, what ``sqakd-edge train`` keeps as ``best.pt``) and the best
epoch by test accuracy (what the authors' code reports). Labels never choose anything in an SQAKD run.

The grid runs cell by cell and skips the cells already in its results file, so the same command resumes it
(across sessions too: the results are committed); a cell interrupted half-way resumes from its ``last.pt``
under ``--work``. It prints its progress and the time left, and runs on CUDA with the same code when there is
a GPU.

    python benchmarks/accuracy_grid.py --work /tmp/grid --results benchmarks/results/accuracy_grid
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from sqakd_edge.atomic import atomic_write_text
from sqakd_edge.config import QuantConfig, TrainConfig, to_dict
from sqakd_edge.data import open_dataset
from sqakd_edge.hashing import file_sha256
from sqakd_edge.quant import prepare_qat
from sqakd_edge.train import build_model_from_checkpoint, evaluate, fit, get_recipe, load_checkpoint
from sqakd_edge.train.loop import RunData, split_held_out

ROOT = Path(__file__).resolve().parent
TEACHER = ROOT / "teachers" / "resnet20_fashion_mnist.pt"
# family label -> (quantizer, backward): the paper's four methods (EWGS is the interval quantizer's backward)
FAMILIES = {"pact": ("pact", "ste"), "lsq": ("lsq", "ste"), "dorefa": ("dorefa", "ste"),
            "interval+ewgs": ("interval", "ewgs")}
BITS = (2, 3, 4)
W8_FAMILIES = ("lsq", "interval+ewgs")
METHODS = ("ce", "sqakd")
LABELS = {"ptq": "PTQ", "ce": "CE-QAT", "sqakd": "SQAKD"}


@dataclass(frozen=True)
class Cell:
    """One student (or PTQ baseline) of the grid."""

    family: str
    bits: int
    method: str  # ptq | ce | sqakd
    seed: int

    @property
    def name(self) -> str:
        return f"{self.family}-W{self.bits}A{self.bits}-{self.method}-seed{self.seed}"

    def quant(self) -> QuantConfig:
        quantizer, backward = FAMILIES[self.family]
        return QuantConfig(quantizer=quantizer, backward=backward, wbits=self.bits, abits=self.bits)


def plan(seeds: dict[int, tuple[int, ...]]) -> list[Cell]:
    """Every cell, cheap PTQ baselines first, then students in order of bits (low bits first)."""
    cells = [Cell(f, b, "ptq", 0) for f in FAMILIES for b in BITS]
    cells += [Cell(f, 8, "ptq", 0) for f in W8_FAMILIES]
    for bits in (*BITS, 8):
        families = W8_FAMILIES if bits == 8 else tuple(FAMILIES)
        for seed in seeds.get(bits, (0,)):
            for family in families:
                for method in METHODS:
                    cells.append(Cell(family, bits, method, seed))
    return cells


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion-mnist", help="dataset spec (default: Debian's full Fashion-MNIST)")
    p.add_argument("--teacher", default=str(TEACHER), help="the float teacher checkpoint")
    p.add_argument("--work", default="runs/accuracy_grid", help="folder for the cells' checkpoints (resumable)")
    p.add_argument("--results", default=str(ROOT / "results" / "accuracy_grid"),
                   help="results path without suffix: writes .json, .md and .png")
    p.add_argument("--epochs", type=int, default=2, help="epochs per student")
    p.add_argument("--subset", type=int, default=0,
                   help="training images per student, a fixed subset (10 %% held out for selection; 0: all)")
    p.add_argument("--recipe", default="fashion-mnist", help="student recipe (sqakd-edge train --list-recipes)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seeds-low", type=int, default=2, help="seeds for W2A2 and W4A4 (W3A3 and W8A8 get 1)")
    p.add_argument("--extra-seeds", default="", help="more seeds for some bits, e.g. '4:2,3' (bits:seed,seed)")
    p.add_argument("--only", default="", help="run only cells whose name contains one of these (comma-separated)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 leaves the other core of a 2-core machine for other work)")
    p.add_argument("--report-only", action="store_true", help="rewrite .md and .png from the JSON; train nothing")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fixed_subset(dataset: Any, size: int) -> Any:
    """The first ``size`` images of one fixed permutation (the same for every cell), or everything."""
    n = len(dataset)
    if not size or size >= n:
        return dataset
    order = torch.randperm(n, generator=torch.Generator().manual_seed(12345)).tolist()
    return Subset(dataset, order[:size])


def run_data(spec: str, size: int, seed: int) -> RunData:
    """Augmented training part and plain held-out part (10 %, seed-dependent) of the fixed subset; the test set."""
    train = open_dataset(spec, "train", augment=True)
    plain = open_dataset(spec, "train", augment=False)
    test = open_dataset(spec, "test", augment=False)
    part, held = split_held_out(fixed_subset(train.dataset, size), fixed_subset(plain.dataset, size), 0.1, seed)
    meta = {"spec": spec, "name": train.name, "mean": list(train.mean), "std": list(train.std),
            "in_channels": train.in_channels, "input_size": train.input_size, "num_classes": train.num_classes,
            "labelled": True, "subset": size or len(train.dataset)}
    return RunData(part, held, test.dataset, True, meta)


def ptq_cell(cell: Cell, teacher_ckpt: dict[str, Any], data: RunData, config: TrainConfig) -> dict[str, Any]:
    """The student at step 0: quantizers initialised on the first training batch (as ``fit`` does), no training."""
    student = prepare_qat(build_model_from_checkpoint(teacher_ckpt), cell.quant())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    student.to(device).eval()
    images, _ = next(iter(DataLoader(data.train, batch_size=config.batch_size, shuffle=False)))
    start = time.perf_counter()
    with torch.no_grad():
        student(images.to(device))
    acc = evaluate(student, data.test, config, labelled=True, device=device)["acc"]  # type: ignore[arg-type]
    return {"test_acc": acc, "seconds": time.perf_counter() - start}


def student_cell(cell: Cell, teacher_ckpt: dict[str, Any], teacher_path: Path, data: RunData, config: TrainConfig,
                 work: Path) -> dict[str, Any]:
    """Train (or resume) one student; its test accuracy after every epoch comes from ``fit``'s history."""
    out = work / cell.name
    quant = cell.quant()
    teacher = build_model_from_checkpoint(teacher_ckpt) if config.uses_teacher else None
    torch.manual_seed(cell.seed)
    start = time.perf_counter()
    fitted = fit(prepare_qat(build_model_from_checkpoint(teacher_ckpt), quant), data, config, out,
                 model_meta=dict(teacher_ckpt["model"]), teacher=teacher, quant=quant,
                 teacher_meta={"path": str(teacher_path), "sha256": file_sha256(teacher_path)},
                 resume=(out / "last.pt").exists(), progress=False, log=lambda m: log(f"  {cell.name}: {m}"))
    seconds = time.perf_counter() - start
    history = fitted.history
    by_epoch = [row["test_acc"] for row in history]
    chosen = next(row for row in history if row["epoch"] == fitted.best["epoch"])
    return {"test_acc": chosen["test_acc"], "selected_epoch": fitted.best["epoch"],
            "selected_by": fitted.best["metric"],
            "test_acc_by_epoch": by_epoch, "test_acc_oracle": max(by_epoch), "test_acc_last": by_epoch[-1],
            "val_loss_by_epoch": [row.get("val_loss") for row in history],
            "images_per_s": statistics.mean(row["images_per_s"] for row in history), "seconds": seconds}


# --- the report ------------------------------------------------------------------------------------------------


def spread(values: list[float]) -> float:
    """Half the range over seeds (with two seeds: each one's distance from the mean)."""
    return (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows family x bits with PTQ, CE-QAT, SQAKD (mean, spread, values) and the difference SQAKD - CE-QAT."""
    rows = []
    for family in FAMILIES:
        for bits in (*BITS, 8):
            row: dict[str, Any] = {"family": family, "bits": bits}
            for method in ("ptq", *METHODS):
                cells = [c for c in results["cells"].values()
                         if c["family"] == family and c["bits"] == bits and c["method"] == method]
                if not cells:
                    continue
                accs = [c["test_acc"] for c in cells]
                row[method] = {"mean": statistics.mean(accs), "spread": spread(accs), "values": accs,
                               "seeds": [c["seed"] for c in cells]}
                if method == "sqakd":
                    oracle = [c["test_acc_oracle"] for c in cells]
                    row[method]["oracle_mean"] = statistics.mean(oracle)
            if "ce" in row and "sqakd" in row:
                row["delta"] = row["sqakd"]["mean"] - row["ce"]["mean"]
                # the difference is inside the noise when it is smaller than the seeds' spreads together
                row["delta_within_spread"] = abs(row["delta"]) <= row["sqakd"]["spread"] + row["ce"]["spread"]
            if len(row) > 2:
                rows.append(row)
    return rows


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def markdown(results: dict[str, Any]) -> str:
    s = results["setup"]
    t = results["teacher"]
    lines = [
        "# The paper's claim on Fashion-MNIST: SQAKD (no labels) vs CE-QAT (labels), every quantizer family",
        "",
        f"Written {results['written']} by `benchmarks/accuracy_grid.py` on {results['machine']}.",
        f"Status: **{results['status']}** ({len(results['cells'])} of {results['planned']} cells); "
        f"wall time of the cells so far: {sum(c['seconds'] for c in results['cells'].values()) / 3600:.2f} h.",
        "",
        "## Command",
        "```",
        *results["commands"],
        "```",
        "",
        "## Setup",
        f"- Teacher: `{s['teacher_file']}` (sha256 `{t['sha256'][:16]}…`), ResNet-20 float, "
        f"**{pct(t['test_acc'])} %** test accuracy on the 10k test images ({t['recipe']}).",
        f"- Students: start from the teacher's weights; {s['epochs']} epochs on "
        + (f"a fixed subset of {s['subset']} training images" if s["subset"] else "all 60 000 training images")
        + f" (10 % held out, seed-dependent), recipe `{s['recipe']}` ({s['config_short']}). The same "
        "budget and recipe for both methods; first and last layer float (the paper), deployable (INT8-exportable) "
        "grids, per-channel weights.",
        "- CE-QAT: cross-entropy on the labels. SQAKD: T²·KL(teacher ‖ student) at T=4, no labels (its `best.pt` "
        "is chosen by the held-out KL). PTQ: the same quantizers initialised on one calibration batch, no training.",
        "- Reported: test accuracy (%) of each method's selected checkpoint, mean ± half the range over seeds "
        "(values per seed in brackets); Δ = SQAKD − CE-QAT (*: inside the seeds' spread).",
        "",
        "## Results",
        "",
        "| family | bits | PTQ | CE-QAT | SQAKD | Δ (SQAKD − CE) | SQAKD, best epoch by test acc |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(row: dict[str, Any], method: str) -> str:
        if method not in row:
            return "—"
        e = row[method]
        values = f" ({', '.join(pct(v) for v in e['values'])})" if len(e["values"]) > 1 else ""
        return f"{pct(e['mean'])} ± {pct(e['spread'])}{values}" if len(e["values"]) > 1 else pct(e["mean"])

    for row in results["table"]:
        delta = f"{100 * row['delta']:+.2f}{'*' if row['delta_within_spread'] else ''}" if "delta" in row else "—"
        oracle = pct(row["sqakd"]["oracle_mean"]) if "sqakd" in row else "—"
        lines.append(f"| {row['family']} | W{row['bits']}A{row['bits']} | {cell(row, 'ptq')} | {cell(row, 'ce')} | "
                     f"{cell(row, 'sqakd')} | {delta} | {oracle} |")
    cells = [c for c in results["cells"].values() if c["method"] != "ptq"]
    if cells:
        lines += ["", "## Cost", "",
                  "| cell kind | cells | wall s per cell (mean) | training images/s |", "|---|---|---|---|"]
        kinds: dict[str, list[dict[str, Any]]] = {}
        for c in cells:
            kinds.setdefault(f"{c['family']} {LABELS[c['method']]}", []).append(c)
        for kind, group in kinds.items():
            lines.append(f"| {kind} | {len(group)} | {statistics.mean(c['seconds'] for c in group):.0f} | "
                         f"{statistics.mean(c['images_per_s'] for c in group):.0f} |")
    lines += ["", "![accuracy vs bits](accuracy_grid.png)", ""]
    if results.get("notes"):
        lines += ["## Notes", "", *results["notes"], ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Test accuracy vs bits, one panel per family: CE-QAT and SQAKD with seed spread, PTQ, the teacher dashed.

    Bits sit at even spacing (2, 3, 4, 8). PTQ points far below the QAT range are drawn on the bottom edge
    with their value written beside them, so they do not squash the lines that matter.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = {2: 0, 3: 1, 4: 2, 8: 3}
    teacher = 100 * results["teacher"]["test_acc"]
    qat = [100 * r[m]["mean"] for r in results["table"] for m in METHODS if m in r]
    low = max(0.0, min(qat + [teacher]) - 2)
    high = teacher + 1.5
    fig, axes = plt.subplots(1, len(FAMILIES), figsize=(4 * len(FAMILIES), 3.8), sharey=True)
    for ax, family in zip(axes, FAMILIES, strict=True):
        rows = [r for r in results["table"] if r["family"] == family]
        for method, style, color in (("ce", "-o", "tab:orange"), ("sqakd", "-s", "tab:blue")):
            pts = [(positions[r["bits"]], 100 * r[method]["mean"], 100 * r[method]["spread"]) for r in rows
                   if method in r]
            if pts:
                x, y, err = zip(*pts, strict=True)
                ax.errorbar(x, y, yerr=err, fmt=style, color=color, capsize=3, label=LABELS[method])
        ptq = [(positions[r["bits"]], 100 * r["ptq"]["mean"]) for r in rows if "ptq" in r]
        if ptq:
            x, y = zip(*ptq, strict=True)
            shown = [max(v, low + 0.15) for v in y]
            ax.plot(x, shown, ":^", color="gray", label="PTQ (no training)")
            for xi, yi, si in zip(x, y, shown, strict=True):
                if yi < low:
                    ax.annotate(f"{yi:.1f}", (xi, si), textcoords="offset points", xytext=(4, 3), fontsize=7,
                                color="gray")
        ax.axhline(teacher, linestyle="--", color="black", linewidth=1, label=f"teacher {teacher:.2f}")
        ax.set_title(family)
        ax.set_xlabel("bits (W = A)")
        ax.set_xticks(list(positions.values()), [f"W{b}A{b}" for b in positions])
        ax.set_xlim(-0.4, 3.4)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_ylim(low, high)
    axes[-1].legend(loc="lower right", fontsize=8)
    fig.suptitle("Fashion-MNIST, ResNet-20: SQAKD (no labels) vs CE-QAT (labels); bars: half the seed range")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write(base: Path, results: dict[str, Any]) -> None:
    results["table"] = table(results)
    results["written"] = time.strftime("%Y-%m-%d %H:%M:%S")
    text = json.dumps(results, indent=1)
    atomic_write_text(base.with_name(base.name + ".json"), text)
    md = markdown(results)
    atomic_write_text(base.with_name(base.name + ".md"), md)
    if results["table"]:
        plot(results, base.with_name(base.name + ".png"))


def seeds_per_bits(args: argparse.Namespace) -> dict[int, tuple[int, ...]]:
    seeds = {2: tuple(range(args.seeds_low)), 4: tuple(range(args.seeds_low)), 3: (0,), 8: (0,)}
    for part in filter(None, args.extra_seeds.split(";")):
        bits, _, listed = part.partition(":")
        seeds[int(bits)] = tuple(dict.fromkeys((*seeds.get(int(bits), ()), *map(int, listed.split(",")))))
    return seeds


def machine() -> str:
    if torch.cuda.is_available():
        return f"CUDA {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f" {f}" in text]
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
        flags = f"{model}, ISA {' '.join(isa)}, "
    except OSError:
        pass
    return (f"{flags}{os.cpu_count()} cores, {platform.machine()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    base = Path(args.results)
    json_path = base.with_name(base.name + ".json")
    results: dict[str, Any] = json.loads(json_path.read_text()) if json_path.exists() else {"cells": {}, "notes": []}
    if args.report_only:
        write(base, results)
        return
    teacher_path = Path(args.teacher)
    teacher_ckpt = load_checkpoint(teacher_path, kind="fp")
    config = get_recipe(args.recipe).apply(epochs=args.epochs, batch_size=args.batch_size)
    command = shlex.join(["python", "benchmarks/accuracy_grid.py", *sys.argv[1:]])
    results.setdefault("commands", [])
    if command not in results["commands"]:
        results["commands"].append(command)
    results.update({
        "machine": machine(), "status": "running",
        "setup": {"data": args.data, "teacher_file": os.path.relpath(teacher_path, ROOT.parent), "epochs": args.epochs,
                  "subset": args.subset, "recipe": args.recipe, "config": to_dict(config),
                  "config_short": f"{config.optimizer}, lr {config.lr:g}, quantizer lr {config.quant_lr:g}, "
                                  f"wd {config.weight_decay:g}, batch {config.batch_size}, {config.schedule}"},
    })
    sha = file_sha256(teacher_path)
    if "teacher" not in results or results["teacher"]["sha256"] != sha:
        if results["cells"]:
            raise SystemExit(f"error: {teacher_path} is not the teacher of the results in {json_path} (sha256 "
                             "differs); use that teacher, or other --results")
        test = open_dataset(args.data, "test", augment=False)
        acc = evaluate(build_model_from_checkpoint(teacher_ckpt), test.dataset, config, labelled=True)["acc"]
        tc = teacher_ckpt["train"]
        results["teacher"] = {"sha256": sha, "test_acc": acc, "best_epoch": teacher_ckpt["best"]["epoch"],
                              "recipe": f"{tc['optimizer']}, lr {tc['lr']:g}, wd {tc['weight_decay']:g}, batch "
                                        f"{tc['batch_size']}, {tc['schedule']}, {tc['epochs']} epochs on the 60k "
                                        "training images, 10 % held out; see benchmarks/teachers/README.md"}
    cells = plan(seeds_per_bits(args))
    if args.only:
        wanted = [w for w in args.only.split(",") if w]
        cells = [c for c in cells if any(w in c.name for w in wanted)]
    # what this run plans plus what earlier runs (with other --only/--extra-seeds) already hold
    results["planned"] = len({c.name for c in cells} | set(results["cells"]))
    todo = [c for c in cells if c.name not in results["cells"]]
    log(f"{len(cells) - len(todo)} of {len(cells)} cells already done; {len(todo)} to run on {results['machine']}")
    data_by_seed: dict[int, RunData] = {}
    done_seconds: dict[str, list[float]] = {}
    for c in results["cells"].values():
        done_seconds.setdefault(c["method"], []).append(c["seconds"])
    for i, cell in enumerate(todo, 1):
        if cell.seed not in data_by_seed:
            data_by_seed[cell.seed] = run_data(args.data, args.subset, cell.seed)
        data = data_by_seed[cell.seed]
        log(f"[{i}/{len(todo)}] {cell.name}")
        if cell.method == "ptq":
            outcome = ptq_cell(cell, teacher_ckpt, data, config)
        else:
            cfg = get_recipe(args.recipe).apply(epochs=args.epochs, batch_size=args.batch_size, method=cell.method,
                                                seed=cell.seed)
            outcome = student_cell(cell, teacher_ckpt, teacher_path, data, cfg, Path(args.work))
        results["cells"][cell.name] = {"family": cell.family, "bits": cell.bits, "method": cell.method,
                                       "seed": cell.seed, **outcome}
        write(base, results)
        done_seconds.setdefault(cell.method, []).append(outcome["seconds"])
        left = todo[i:]
        eta = sum(statistics.mean(done_seconds.get(c.method) or done_seconds.get("sqakd") or done_seconds["ptq"])
                  for c in left)
        log(f"  {cell.name}: test acc {pct(outcome['test_acc'])} % in {outcome['seconds']:.0f} s; "
            f"{len(left)} cell(s) left, about {eta / 60:.0f} min")
    results["status"] = "complete" if len(results["cells"]) >= results["planned"] else "partial"
    write(base, results)
    log(f"wrote {base}.md/.json/.png")


if __name__ == "__main__":
    main()
