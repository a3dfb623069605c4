"""torchvision's model zoo through the whole chain: every classification builder, W8A8 and W4A4, both targets.

Per model (random weights: none can be downloaded here), at the smallest input it takes:

1. build it from the source ``torchvision:NAME`` (10 classes) and train it for a few steps on a synthetic
   10-class task (class prototypes plus noise), then re-estimate its BatchNorm statistics on that task. A
   network with random weights has near-tied logits, and quantized, one float32 rounding that moves an
   activation across a rounding boundary flips decisions: even PyTorch's float32 student disagrees with its
   float64 self there, so parity would test nothing (measured: 47-100 % self-agreement at random weights);
2. ``prepare_qat`` it (the layer policy: first and last layer float), initialise the quantizers on a batch,
   take one SQAKD step (KL to the float model, Adam);
3. export it for TensorRT and for ONNX Runtime: fold, lower, lint, and parity against the PyTorch student on 64
   fresh inputs of the task, with ONNX Runtime's optimisations off and on.

Each row also records PyTorch's float32 student against its float64 self (the float32 noise floor) and the
BN-folded student against the student in float64 (exact folding: ~1e-12), which explain a parity miss.

    python benchmarks/torchvision_coverage.py --out benchmarks/results/torchvision_coverage   # all 80
    python benchmarks/torchvision_coverage.py --models resnet18,vit_b_16 --bits 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sqakd_edge.config import QuantConfig
from sqakd_edge.errors import SqakdEdgeError
from sqakd_edge.export.api import ExportConfig, ExportInputs, export_model
from sqakd_edge.export.inputs import ParityData
from sqakd_edge.models.sources import build, parse_model_source, torchvision_classifiers
from sqakd_edge.quant import iter_quant_layers, plan_quantization, prepare_qat

# The smallest input each family takes (the rest: 64x64). Inception-v3's stem needs 75; MaxViT's 7x7
# partitions need a side divisible by 7 * 32; ViT-H/14's 14x14 patches need a multiple of 14.
INPUT_SIZE = {"inception_v3": 75, "maxvit_t": 224, "vit_h_14": 56}
# the smallest member of each family: the CI subset (W4A4, both targets; about 2.5 min on one core)
CI_SUBSET = ("resnet18", "resnext50_32x4d", "mobilenet_v3_small", "efficientnet_b0", "regnet_x_400mf",
             "regnet_y_400mf", "mnasnet0_5", "shufflenet_v2_x0_5", "squeezenet1_1", "densenet121", "googlenet",
             "inception_v3", "alexnet", "convnext_tiny")
# families whose smallest member is too slow for every CI run: seconds for one W4A4 check on one core
# (measured 2026-12-03 on AMD EPYC with another job on the second core); they run with -m slow
HEAVY = {"wide_resnet50_2": 56, "vgg11_bn": 68, "vit_b_16": 78, "swin_t": 53, "maxvit_t": 375}


def family(name: str) -> str:
    """``resnext50_32x4d`` -> ``resnext``, ``mnasnet0_5`` -> ``mnasnet``, ``vit_b_16`` -> ``vit``."""
    return name.split("_")[0].rstrip("0123456789")


TARGETS = ("tensorrt", "onnxruntime")
TRANSFORMERS = ("vit_", "swin_", "maxvit_")
MIN_TOP1_OFF = 0.999


def input_size(name: str) -> int:
    return INPUT_SIZE.get(name, 64)


def source_of(name: str) -> str:
    """The model source string; ViTs take their image size at build."""
    return f"torchvision:{name}?image_size={input_size(name)}" if name.startswith("vit_") else f"torchvision:{name}"


def calibrate_batchnorm(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Running statistics as the cumulative average over ``batches`` (train mode, no gradients)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


def float64_reference(student: nn.Module, inputs: torch.Tensor) -> dict[str, float]:
    """How the student in float32 compares with itself in float64, and whether BN folding is exact.

    ``fold_max_dlogit``: the BN-folded student vs the student, both float64 (~1e-12: folding is exact).
    ``float32_top1``: top-1 agreement of the float32 student with the float64 one: the float32 noise floor. In a
    quantized network with small logit margins (random weights) one float32 rounding can move an activation
    across a rounding boundary, so even PyTorch disagrees with itself there; a graph cannot do better.
    """
    import copy

    from sqakd_edge.export.fold import fold_batchnorm

    s64 = copy.deepcopy(student).double().eval()
    with torch.no_grad():
        ref = s64(inputs.double())
        folded = fold_batchnorm(s64, dtype=torch.float64).module(inputs.double())
        f32 = student(inputs)
    return {"fold_max_dlogit": float((folded - ref).abs().max()),
            "float32_top1": float((f32.argmax(1) == ref.argmax(1)).double().mean()),
            "top1_float64": ref.argmax(1).tolist()}


def teacher_on_task(name: str, *, steps: int, seed: int = 0) -> tuple[nn.Module, Any]:
    """The float model after ``steps`` Adam steps on the synthetic task, BatchNorm statistics re-estimated."""
    torch.manual_seed(seed)
    size = input_size(name)
    model = build(parse_model_source(source_of(name)), num_classes=10, in_channels=3).model
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(10, 3, size, size, generator=gen)

    def task(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=gen)
        return prototypes[y] + 0.7 * torch.randn(n, 3, size, size, generator=gen), y

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        x, y = task(16)
        out = model(x)
        loss = F.cross_entropy(out[0] if isinstance(out, tuple) else out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    calibrate_batchnorm(model, [task(16)[0] for _ in range(4)])
    return model, task


def check(name: str, bits: tuple[int, ...] = (8, 4), *, samples: int = 64, steps: int = 20, seed: int = 0
          ) -> list[dict[str, Any]]:
    """One model through the chain at each bit width; rows of the coverage table (never raises)."""
    rows = []
    start = time.perf_counter()
    try:
        teacher, task = teacher_on_task(name, steps=steps, seed=seed)
    except Exception as exc:  # noqa: BLE001 - recorded as the rows' reason
        seconds = round(time.perf_counter() - start, 1)
        failure = _failure(exc)
        return [{"model": name, "bits": b, "input": input_size(name), "seconds": seconds, **failure} for b in bits]
    train_seconds = time.perf_counter() - start
    for b in bits:
        row = _check_bits(name, b, teacher, task, samples)
        row["seconds"] = round(row["seconds"] + train_seconds / len(bits), 1)
        rows.append(row)
    return rows


def _failure(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, SqakdEdgeError):
        return {"status": "refused", "reason": str(exc).splitlines()[0][:300]}
    tb = traceback.extract_tb(exc.__traceback__)[-1]  # a traceback is a bug of ours: the table shows it
    return {"status": "error", "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]} "
                                         f"({Path(tb.filename).name}:{tb.lineno})"}


def _graph_vs_float64(path: Path, inputs: torch.Tensor, top1: list[int]) -> float:
    """Top-1 agreement of the graph (ONNX Runtime, optimisations off) with the float64 student."""
    from sqakd_edge.export.parity import run, session

    logits = run(session(path.read_bytes(), "off", threads=1), inputs.numpy())
    return float((logits.argmax(1) == torch.tensor(top1).numpy()).mean())


def _check_bits(name: str, bits: int, teacher: nn.Module, task: Any, samples: int) -> dict[str, Any]:
    size = input_size(name)
    row: dict[str, Any] = {"model": name, "bits": bits, "input": size}
    start = time.perf_counter()
    try:
        quant = QuantConfig(quantizer="lsq", wbits=bits, abits=bits)
        plan = plan_quantization(teacher, quant)
        student = prepare_qat(teacher, quant)
        student.eval()
        with torch.no_grad():
            student(task(16)[0])
        # one SQAKD step: the student's BatchNorms keep the teacher's statistics
        student.train()
        for m in student.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=1e-5)
        x, _ = task(16)
        with torch.no_grad():
            target = teacher(x)
        out = student(x)
        logits = out[0] if isinstance(out, tuple) else out
        t = 4.0
        loss = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(target / t, 1), reduction="batchmean",
                        log_target=True) * t * t
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        student.eval()
        row.update(quantized=len(list(iter_quant_layers(student))), weighted=len(plan.weighted),
                   kept_float={k: v for k, v in plan.kept_float.items() if "paper" not in v})
        inputs, labels = task(samples)
        row["float64"] = float64_reference(student, inputs)
        with torch.no_grad():
            row["teacher_top1"] = float((teacher(inputs).argmax(1) == labels).double().mean())
        pdata = ParityData(inputs, None, None, "synthetic-task", None)
        meta = {"name": name, "num_classes": 10, "in_channels": 3, "input_size": size}
        for target in TARGETS:
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                config = ExportConfig(target=target, input_shape=(1, 3, size, size), parity_samples=samples,
                                      fp32_parity_samples=8, fail_on_parity_miss=False, threads=1)
                to_export = ExportInputs(meta, student=student, float_model=teacher, quant=quant)
                result = export_model(to_export, Path(tmp) / "export", config, parity_data=pdata,
                                      log=lambda _m: None)
                vs_f64 = _graph_vs_float64(Path(tmp) / "export" / "model.int8.onnx", inputs,
                                           row["float64"]["top1_float64"])
            parity = result.manifest["parity"]["int8"]
            kernels = parity["on"].get("kernels") or {}
            integer, floating = sum(kernels.get("integer", {}).values()), sum(kernels.get("float", {}).values())
            graph = result.manifest["graphs"]["int8"]
            row[target] = {
                "exact": graph["exact"], "off": parity["off"]["top1_agreement"], "on": parity["on"]["top1_agreement"],
                "max_dlogit_off": parity["off"]["max_abs_dlogit"], "lint_warnings": graph["lint"]["warnings"],
                "off_vs_float64": vs_f64,
                "integer_share": integer / (integer + floating) if integer + floating else 0.0,
                "export_s": round(time.perf_counter() - t0, 1)}
        row["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - recorded as the row's reason
        row.update(_failure(exc))
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def verdict(row: dict[str, Any]) -> str:
    """``exact``, ``exact (float32 noise)``, or what missed.

    ``exact``: both targets' graphs are exact (no re-quantized grid) and agree with the PyTorch student on
    >= 99.9 % of the inputs with ONNX Runtime's optimisations off. ``exact (float32 noise)``: the same graphs,
    BN folding exact in float64, but the student's margins are so small that float32 itself flips decisions:
    against the float64 student, the graph in float32 agrees at least as often as PyTorch's float32 student
    does, less 2 inputs (two float32 computations in different orders, measured against the same truth).
    """
    if row["status"] != "ok":
        return row["status"]
    misses, noisy = [], False
    f64 = row["float64"]
    floor = f64["float32_top1"] - 2 / 64
    for target in TARGETS:
        e = row[target]
        if not e["exact"]:
            misses.append(f"{target} not exact")
        elif e["off"] < MIN_TOP1_OFF:
            if f64["fold_max_dlogit"] <= 1e-9 and e.get("off_vs_float64", 0.0) >= floor:
                noisy = True
            else:
                misses.append(f"{target} parity off {e['off']:.3f}")
    return "; ".join(misses) or ("exact (float32 noise)" if noisy else "exact")


def markdown(rows: list[dict[str, Any]], command: str, machine: str) -> str:
    cnn = [r for r in rows if not r["model"].startswith(TRANSFORMERS)]
    lines = ["# torchvision's model zoo through sqakd-edge", "",
             f"Written {time.strftime('%Y-%m-%d %H:%M')} on {machine} by:", "", "```", command, "```", "",
             "Random weights trained 20 Adam steps on a synthetic 10-class task (BatchNorm statistics re-estimated), "
             "the smallest input each model takes, LSQ at W8A8 and W4A4 "
             "(first and last layer float), one SQAKD step, export to both targets, "
             "parity against the PyTorch student on 64 inputs with ONNX Runtime's optimisations off / on. "
             "`exact`: both graphs exact (no re-quantized grid) and >= 99.9 % top-1 agreement with optimisations off. "
             "`exact (float32 noise)`: the same, except that the student's logit margins are so small "
             "that float32 itself flips decisions (the 'f32 vs f64' agreement, PyTorch's float32 student against its "
             "float64 self, is below 100 %): against the float64 student the graph ('ORT off vs f64') agrees at "
             "least as often, less 2 inputs, and BN folding is exact in float64. "
             "Integer share: the weighted layers ONNX Runtime ran on integer kernels (ONNX Runtime "
             "target).", ""]
    summary = {}
    for bits in sorted({r["bits"] for r in rows}, reverse=True):
        group = [r for r in rows if r["bits"] == bits]
        ok = [r for r in group if verdict(r).startswith("exact")]
        summary[bits] = (len(ok), len(group))
    lines += ["Summary: " + "; ".join(f"W{b}A{b}: {n} of {t} exact with parity on both targets"
                                        for b, (n, t) in summary.items())
              + f" ({len(cnn)} CNN rows).", ""]
    lines += ["| model | bits | input | quantized / weighted | verdict | f32 vs f64 | ORT off vs f64 | TRT off / on "
              "| ORT off / on | ORT integer share | export s (TRT, ORT) | note |", "|---" * 12 + "|"]
    for r in rows:
        v = verdict(r)
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | W{r['bits']}A{r['bits']} | {r['input']} | — | {v} | — | — | — | — | "
                         f"{r['reason']} |")
            continue
        trt, ort = r["tensorrt"], r["onnxruntime"]
        notes = []
        if r["float64"]["fold_max_dlogit"] > 1e-9:
            notes.append(f"BN fold vs student in float64: {r['float64']['fold_max_dlogit']:.1e}")
        if r.get("kept_float"):
            notes.append(f"{len(r['kept_float'])} layer(s) float: {next(iter(r['kept_float'].values()))}")
        lines.append(f"| {r['model']} | W{r['bits']}A{r['bits']} | {r['input']} | {r['quantized']} / {r['weighted']} | "
                     f"{v} | {100 * r['float64']['float32_top1']:.1f} | {100 * ort.get('off_vs_float64', 0):.1f} | "
                     f"{100 * trt['off']:.1f} / {100 * trt['on']:.1f} "
                     f"| {100 * ort['off']:.1f} / {100 * ort['on']:.1f} | {100 * ort['integer_share']:.0f} % | "
                     f"{trt['export_s']}, {ort['export_s']} | {'; '.join(notes)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="", help="comma-separated names (default: all classification builders)")
    p.add_argument("--ci-subset", action="store_true", help="only the smallest member of each family")
    p.add_argument("--bits", type=int, nargs="+", default=[8, 4])
    p.add_argument("--out", default=None, help="results path without suffix (.json, .md)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    names = [n for n in args.models.split(",") if n]
    names = names or (list(CI_SUBSET) if args.ci_subset else torchvision_classifiers())
    base = Path(args.out) if args.out else None
    done: dict[str, Any] = {}
    if base is not None and base.with_name(base.name + ".json").exists():
        done = {f"{r['model']}@{r['bits']}": r for r in json.loads(base.with_name(base.name + ".json").read_text())
                ["rows"]}
    command = shlex.join(["python", "benchmarks/torchvision_coverage.py", *sys.argv[1:]])
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s)"
    rows = []
    for name in names:
        cached = [done.get(f"{name}@{b}") for b in args.bits]
        for row in cached if all(cached) else check(name, tuple(args.bits)):
            rows.append(row)
            print(f"{name} W{row['bits']}A{row['bits']}: {verdict(row)} ({row['seconds']} s)"
                  + (f" — {row.get('reason')}" if row["status"] != "ok" else ""), flush=True)
            if base is not None:
                base.parent.mkdir(parents=True, exist_ok=True)
                base.with_name(base.name + ".json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
                base.with_name(base.name + ".md").write_text(markdown(rows, command, machine))


if __name__ == "__main__":
    main()
