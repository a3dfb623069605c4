"""Accuracy on real data: SQAKD (no labels) vs CE-QAT (labels) on full Fashion-MNIST, W8A8 / W4A4 / W2A2.

One float teacher is trained on the 60k training images (10 % held out for selection); then, for every bit
width and seed, a CE-QAT student (cross-entropy on labels) and an SQAKD student (KL to the teacher, no
labels) start from the teacher's weights and train with the same budget: the same subset of the training
set, epochs, batch, optimiser and schedule (the ``fashion-mnist`` recipe). Accuracy is measured on the
10k test images. The checkpoint reported is ``best.pt``, chosen by each method's own loss on held-out
training data (SQAKD: the KL to the teacher, so never by labels); the last epoch's accuracy is recorded too.

Every run is its own output folder under ``--work``; finished runs are read back, an interrupted one resumes
from its ``last.pt``: re-running the same command continues where it stopped.

    PYTHONPATH=. python benchmarks/accuracy_fmnist.py --work runs/acc_fmnist \
        --results benchmarks/results/accuracy_fmnist
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
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from sqakd_edge.atomic import atomic_write_text
from sqakd_edge.checkpoint import model_meta
from sqakd_edge.config import QuantConfig, TrainConfig, to_dict
from sqakd_edge.data import open_dataset
from sqakd_edge.quant import prepare_qat
from sqakd_edge.train import build_model_from_checkpoint, evaluate, fit, get_recipe, load_checkpoint
from sqakd_edge.train.loop import RunData, split_held_out

METHODS = ("ce", "sqakd")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion-mnist", help="dataset spec (default: Debian's full Fashion-MNIST)")
    p.add_argument("--work", default="runs/acc_fmnist", help="folder for the runs' checkpoints (resumable)")
    p.add_argument("--results", default="benchmarks/results/accuracy_fmnist",
                   help="results path without suffix: writes .md and .json")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--quantizer", default="lsq")
    p.add_argument("--backward", default="ste")
    p.add_argument("--bits", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--teacher-subset", type=int, default=30000, help="training images for the teacher (0: all)")
    p.add_argument("--student-epochs", type=int, default=2)
    p.add_argument("--student-subset", type=int, default=16000, help="training images for each student (0: all)")
    p.add_argument("--first-last-bits", type=int, default=0,
                   help="quantize the first and last layer at this many bits (8: the all-integer ONNX Runtime "
                        "graph); 0: keep them float (paper)")
    p.add_argument("--int32-bias", action="store_true",
                   help="students train with ONNX Runtime's int32 bias grid (train --int32-bias)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--quant-lr", type=float, default=None, help="override the recipe's quantizer lr")
    p.add_argument("--lr", type=float, default=None, help="override the recipe's student lr")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--fp-continued", action="store_true",
                   help="also train the float teacher further with each student's budget and labels (a reference)")
    p.add_argument("--notes", help="a Markdown file whose text goes under 'Notes' in the report")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the report from the JSON of an earlier run (e.g. to add --notes); trains nothing")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: robust on a shared 2-core machine, where 2 threads stall each other)")
    return p.parse_args(argv)


def subset(dataset: Any, size: int, seed: int) -> Any:
    """The first ``size`` images of a fixed permutation (the same for every run), or everything."""
    n = len(dataset)
    if not size or size >= n:
        return dataset
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, order[:size])


def run_data(spec: str, size: int, seed: int) -> tuple[RunData, Any]:
    """Augmented training part and plain held-out part (10 %, seed-dependent) of a fixed subset; the test set."""
    train = open_dataset(spec, "train", augment=True)
    plain = open_dataset(spec, "train", augment=False)
    test = open_dataset(spec, "test", augment=False)
    # The same subset indices for the augmented and the plain view: 12345 fixes which images, not the seed.
    part, held = split_held_out(subset(train.dataset, size, 12345), subset(plain.dataset, size, 12345), 0.1, seed)
    meta = {"spec": spec, "name": train.name, "mean": list(train.mean), "std": list(train.std),
            "in_channels": train.in_channels, "input_size": train.input_size, "num_classes": train.num_classes,
            "labelled": True, "subset": size or len(train.dataset)}
    return RunData(part, held, None, True, meta), test.dataset


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def test_accuracy(path: Path, test: Any, config: TrainConfig) -> float:
    """Top-1 accuracy of a checkpoint's model on the test set (labels are only measured here)."""
    model = build_model_from_checkpoint(load_checkpoint(path))
    return evaluate(model, test, config, labelled=True)["acc"]


def train_one(out: Path, make_model: Any, data: RunData, test: Any, config: TrainConfig, **kwargs: Any
              ) -> dict[str, Any]:
    """Train (or resume, or read back) one run, then measure its best and last checkpoints on the test set.

    The test set is kept out of ``fit`` (it would be evaluated every epoch); only the selected checkpoint
    and the last one are measured.
    """
    result_file = out / "bench_result.json"
    if result_file.exists():
        log(f"{out.name}: already finished, read back")
        return dict(json.loads(result_file.read_text()))
    resume = (out / "last.pt").exists()
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    fitted = fit(make_model(), data, config, out, resume=resume, progress=False,
                 log=lambda m: log(f"{out.name}: {m}"), **kwargs)
    # Wall seconds of this run (training + held-out evaluation); a resumed run counts only its last part.
    seconds = time.perf_counter() - start
    acc_best = test_accuracy(fitted.best_path, test, config)
    last_epoch = fitted.history[-1]["epoch"]
    acc_last = acc_best if fitted.best["epoch"] == last_epoch else test_accuracy(fitted.last_path, test, config)
    result = {"history": fitted.history, "best": fitted.best, "seconds": seconds, "test_acc": acc_best,
              "test_acc_last": acc_last}
    text = json.dumps(result, indent=2)
    atomic_write_text(result_file, text)
    return result


def row_of(name: str, method: str, bits: int | None, seed: int, run: dict[str, Any]) -> dict[str, Any]:
    history, best = run["history"], run["best"]
    return {"run": name, "method": method, "bits": bits, "seed": seed, "epochs": len(history),
            "best_epoch": best["epoch"], "selected_by": best["metric"],
            "test_acc": run["test_acc"], "test_acc_last": run["test_acc_last"],
            "images_per_s": statistics.mean(r["images_per_s"] for r in history), "seconds": run["seconds"]}


def spread(values: list[float]) -> float:
    """Half the range: with two seeds, the distance of each from the mean."""
    return (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def summarise(rows: list[dict[str, Any]], bits: list[int]) -> list[dict[str, Any]]:
    teacher = next(r for r in rows if r["method"] == "fp")
    table = []
    for b in sorted(bits, reverse=True):
        entry: dict[str, Any] = {"bits": b}
        for m in METHODS:
            accs = [r["test_acc"] for r in rows if r["method"] == m and r["bits"] == b]
            last = [r["test_acc_last"] for r in rows if r["method"] == m and r["bits"] == b]
            if accs:
                entry[m] = {"mean": statistics.mean(accs), "spread": spread(accs), "values": accs,
                            "last_mean": statistics.mean(last)}
        if all(m in entry for m in METHODS):
            entry["sqakd_minus_ce"] = entry["sqakd"]["mean"] - entry["ce"]["mean"]
        if "sqakd" in entry:
            entry["sqakd_minus_teacher"] = entry["sqakd"]["mean"] - teacher["test_acc"]
        table.append(entry)
    return table


def pct(x: float) -> str:
    return f"{x * 100:.2f}"


def markdown(report: dict[str, Any]) -> str:
    s = report["setup"]
    teacher = next(r for r in report["runs"] if r["method"] == "fp")
    lines = [
        "# Accuracy on real data: SQAKD vs CE-QAT on Fashion-MNIST",
        "",
        f"Written {report['written']} by `benchmarks/accuracy_fmnist.py` on {report['machine']}.",
        f"Status: **{report['status']}**; wall time of the whole run: {report['wall_seconds'] / 60:.1f} min "
        f"(training and evaluation of all {len(report['runs'])} runs: {report['train_seconds'] / 60:.1f} min).",
        "",
        "## Command",
        "```",
        report["command"],
        "```",
        "",
        "## Setup",
        f"- Data: full Fashion-MNIST from `{s['data']}` (60k train / 10k test, 28x28 grayscale); accuracy on the "
        "10k test images. Augmentation: random crop (2 px zero padding) + horizontal flip.",
        f"- Model: `{s['model']}` (the paper's CIFAR ResNet-20, 1 input channel); quantizer `{s['quantizer']}` "
        f"with `{s['backward']}` backward, per-channel weights, "
        + (f"first and last layer at {s['first_last_bits']} bits, " if s.get("first_last_bits")
           else "first and last layer float (paper), ")
        + ("biases on ONNX Runtime's int32 grid (`--int32-bias`), " if s.get("int32_bias") else "")
        + "deployable "
        "(INT8-exportable) grids.",
        f"- Teacher: float, {s['teacher_epochs']} epochs on {s['teacher_images']} training images (10 % of them "
        f"held out), recipe `fashion-mnist-fp` ({s['teacher_config_short']}).",
        f"- Students: start from the teacher's weights; {s['student_epochs']} epochs on a fixed subset of "
        f"{s['student_images']} training images (10 % held out, seed-dependent), recipe `fashion-mnist` "
        f"({s['student_config_short']}); seeds {', '.join(map(str, s['seeds']))}.",
        "- CE-QAT: cross-entropy on the labels. SQAKD: T²·KL(teacher ‖ student) at T=4, no labels anywhere "
        "(selection by held-out KL).",
        "- Reported: test accuracy of `best.pt` (each method's own held-out loss picks the epoch), mean ± half the "
        "range over seeds; per-seed values and last-epoch accuracy in the JSON.",
        "",
        "## Results (test accuracy, %)",
        "",
        f"Float teacher: **{pct(teacher['test_acc'])}** (best epoch {teacher['best_epoch']}).",
        "",
    ]
    continued = [r["test_acc"] for r in report["runs"] if r["method"] == "fp-continued"]
    if continued:
        lines += [f"Float teacher trained further with a student's budget and labels (reference): "
                  f"**{pct(statistics.mean(continued))} ± {pct(spread(continued))}** "
                  f"({', '.join(pct(v) for v in continued)}).", ""]
    lines += [
        "| bits | CE-QAT (labels) | SQAKD (no labels) | SQAKD − CE | SQAKD − teacher |",
        "|---|---|---|---|---|",
    ]
    for e in report["table"]:
        def cell(m: str, e: dict[str, Any] = e) -> str:
            if m not in e:
                return "—"
            return f"{pct(e[m]['mean'])} ± {pct(e[m]['spread'])} ({', '.join(pct(v) for v in e[m]['values'])})"

        diff = f"{e['sqakd_minus_ce'] * 100:+.2f}" if "sqakd_minus_ce" in e else "—"
        gap = f"{e['sqakd_minus_teacher'] * 100:+.2f}" if "sqakd_minus_teacher" in e else "—"
        lines.append(f"| W{e['bits']}A{e['bits']} | {cell('ce')} | {cell('sqakd')} | {diff} | {gap} |")
    lines += ["", "## Training throughput (images/s, training steps only, this CPU, shared with other work)", "",
              "| run | images/s |", "|---|---|"]
    by_kind: dict[str, list[float]] = {}
    for r in report["runs"]:
        kind = ("float teacher" if r["method"] == "fp" else "float, trained further" if r["bits"] is None
                else f"{r['method']} student W{r['bits']}A{r['bits']}")
        by_kind.setdefault(kind, []).append(r["images_per_s"])
    for kind, rates in by_kind.items():
        lines.append(f"| {kind} | {statistics.mean(rates):.0f} |")
    lines += ["", "## Goals (issue 3)", ""]
    for e in report["table"]:
        if "sqakd_minus_ce" in e and e["bits"] in (2, 4):
            ok = e["sqakd_minus_ce"] >= 0
            lines.append(f"- W{e['bits']}A{e['bits']}: SQAKD ≥ CE-QAT — {'met' if ok else 'NOT met'} "
                         f"({e['sqakd_minus_ce'] * 100:+.2f} pt).")
        if "sqakd_minus_teacher" in e and e["bits"] == 8:
            ok = e["sqakd_minus_teacher"] >= -0.005
            lines.append(f"- W8A8 within 0.5 pt of the teacher — {'met' if ok else 'NOT met'} "
                         f"({e['sqakd_minus_teacher'] * 100:+.2f} pt).")
    if report.get("notes"):
        lines += ["", "## Notes", "", *report["notes"]]
    return "\n".join(lines) + "\n"


def with_ext(base: Path, ext: str) -> Path:
    """``base`` plus an extension; unlike ``with_suffix`` it keeps dots in the name (``accuracy_fmnist.teacher6``)."""
    return base.parent / f"{base.name}{ext}"


def write_results(base: Path, report: dict[str, Any]) -> None:
    text_json = json.dumps(report, indent=2)
    atomic_write_text(with_ext(base, ".json"), text_json)
    text_md = markdown(report)
    atomic_write_text(with_ext(base, ".md"), text_md)


def short(config: TrainConfig) -> str:
    return (f"{config.optimizer}, lr {config.lr:g}, quantizer lr {config.quant_lr:g}, wd {config.weight_decay:g}, "
            f"batch {config.batch_size}, {config.schedule}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    notes = Path(args.notes).read_text().strip().splitlines() if args.notes else []
    if args.report_only:
        base = Path(args.results)
        report = json.loads(with_ext(base, ".json").read_text())
        report["notes"] = notes or report.get("notes", [])
        write_results(base, report)
        return
    wall_start = time.perf_counter()
    work, results = Path(args.work), Path(args.results)
    command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/accuracy_fmnist.py", *sys.argv[1:]])
    overrides = {"lr": args.lr, "quant_lr": args.quant_lr, "temperature": args.temperature}
    t_config = get_recipe("fashion-mnist-fp").apply(epochs=args.teacher_epochs, batch_size=args.batch_size, seed=0)
    report: dict[str, Any] = {
        "command": command, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads", "status": "running",
        "setup": {"data": args.data, "model": args.model, "quantizer": args.quantizer, "backward": args.backward,
                  "bits": args.bits, "seeds": args.seeds, "teacher_epochs": args.teacher_epochs,
                  "student_epochs": args.student_epochs, "teacher_images": args.teacher_subset or 60000,
                  "student_images": args.student_subset or 60000, "teacher_config": to_dict(t_config),
                  "teacher_config_short": short(t_config), "first_last_bits": args.first_last_bits,
                  "int32_bias": args.int32_bias},
        "runs": [], "table": [], "notes": notes,
    }

    log(f"teacher: {args.model}, {args.teacher_epochs} epochs")
    t_data, test = run_data(args.data, args.teacher_subset, 0)
    meta = model_meta(args.model, t_data.meta["num_classes"], t_data.meta["in_channels"], t_data.meta["input_size"])

    def new_teacher() -> torch.nn.Module:
        from sqakd_edge.models import create_model

        return create_model(args.model, num_classes=meta["num_classes"], in_channels=meta["in_channels"])

    t_out = work / "teacher"
    t_run = train_one(t_out, new_teacher, t_data, test, t_config, model_meta=meta)
    report["runs"].append(row_of("teacher", "fp", None, 0, t_run))
    teacher_ckpt = load_checkpoint(t_out / "best.pt", kind="fp")

    for seed in args.seeds:
        s_data, _ = run_data(args.data, args.student_subset, seed)
        if args.fp_continued:
            # A reference, not a method: the float teacher trained further with the students' budget and labels.
            # It shows how much of a CE-QAT student's edge over the teacher is just more training with labels.
            config = get_recipe("fashion-mnist").apply(method="fp", epochs=args.student_epochs,
                                                       batch_size=args.batch_size, seed=seed, **overrides)
            name = f"fp-continued-seed{seed}"
            run = train_one(work / name, lambda: build_model_from_checkpoint(teacher_ckpt), s_data, test, config,
                            model_meta=meta)
            row = row_of(name, "fp-continued", None, seed, run)
            report["runs"].append(row)
            log(f"{name}: test acc {pct(row['test_acc'])}%")
        for bits in args.bits:
            quant = QuantConfig(quantizer=args.quantizer, backward=args.backward, wbits=bits, abits=bits,
                                keep_first_last_float=not args.first_last_bits, first_last_bits=args.first_last_bits,
                                int32_bias=args.int32_bias)
            for method in METHODS:
                config = get_recipe("fashion-mnist").apply(method=method, epochs=args.student_epochs,
                                                           batch_size=args.batch_size, seed=seed, **overrides)
                report["setup"]["student_config"] = to_dict(config)
                report["setup"]["student_config_short"] = short(config)
                name = f"{method}-W{bits}A{bits}-seed{seed}"
                teacher = build_model_from_checkpoint(teacher_ckpt)

                def new_student(quant: QuantConfig = quant) -> torch.nn.Module:
                    return prepare_qat(build_model_from_checkpoint(teacher_ckpt), quant)

                run = train_one(work / name, new_student, s_data, test, config, model_meta=meta, quant=quant,
                                teacher=teacher if config.uses_teacher else None,
                                teacher_meta={"path": str(t_out / "best.pt")})
                row = row_of(name, method, bits, seed, run)
                report["runs"].append(row)
                log(f"{name}: test acc {pct(row['test_acc'])}% (best epoch {row['best_epoch']} by "
                    f"{row['selected_by']}), last {pct(row['test_acc_last'])}%, {row['images_per_s']:.0f} img/s")
                report["table"] = summarise(report["runs"], args.bits)
                report["train_seconds"] = sum(r["seconds"] for r in report["runs"])
                report["wall_seconds"] = time.perf_counter() - wall_start
                report["written"] = time.strftime("%Y-%m-%d %H:%M:%S")
                write_results(results, report)
    report["status"] = "complete"
    report["table"] = summarise(report["runs"], args.bits)
    report["train_seconds"] = sum(r["seconds"] for r in report["runs"])
    report["wall_seconds"] = time.perf_counter() - wall_start
    report["written"] = time.strftime("%Y-%m-%d %H:%M:%S")
    write_results(results, report)
    log(f"done in {report['wall_seconds'] / 60:.1f} min; wrote {with_ext(results, '.md')}")


if __name__ == "__main__":
    main()
