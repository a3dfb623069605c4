#!/usr/bin/env python
"""Reproduce our CPU speed table: ONNX Runtime FP32 vs INT8 QDQ (two styles) vs quantize_static vs PyTorch eager.

Models (random weights; speed does not depend on the values):
  * ResNet-18 for Tiny-ImageNet, 64x64 input, 200 classes (3x3 stride-1 stem, no max-pool);
  * CIFAR ResNet-20, 32x32 input, 10 classes.
For each model, batch 1 and 32, 1 and 2 threads, seven variants are timed in alternating rounds on the
same input, through the package's own runners and timing loop (sqakd_edge.bench):
  fp32        ONNX Runtime, the FP32 graph (torch.onnx.export, opset 13);
  int8-trt    `sqakd-edge export --int8 --target tensorrt` of the SQAKD student (W4A4 LSQ, or
              --quantizer; the CLI's defaults: first/last layer float, 8-bit branch quantizers, a shared 4-bit residual
              stream): s8 symmetric Q/DQ;
  int8-ort    the same student, `--target onnxruntime`: u8 activations, s8 per-channel weights;
  int8-ort-int  the student with its first and last layer quantized at 8 bits (`train --first-last-bits 8`),
              `--target onnxruntime`: an all-integer graph, as quantize_static quantizes every layer;
  ort-qs      onnxruntime.quantization.quantize_static of the float model with its defaults (QDQ, s8/s8,
              per-tensor) -- the tool a user would otherwise reach for;
  ort-qs-u8   quantize_static with the options that suit this CPU (u8 activations, s8 per-channel
              weights): the strongest baseline a user could configure;
  eager       PyTorch eager FP32 (torch.inference_mode).
The student's weights are the float model's, its quantizer ranges set from one random batch: speed
depends on the graph, not on the values (parity runs on 16 random inputs and is reported, not enforced).

Iterations per configuration adapt to a time budget: after warm-up, enough rounds to fill
--budget seconds, at least --min-iters and at most --max-iters per variant.

Usage:  PYTHONPATH=. python benchmarks/bench_speed.py [--out benchmarks/results] [--budget 25] [--quantizer pact]
(another --quantizer than lsq writes bench_speed.<quantizer>.md/.json, so each family's table stands on its own).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sqakd_edge.atomic import atomic_write_json, atomic_write_text
from sqakd_edge.bench.environment import collect_environment, load_average
from sqakd_edge.bench.inputs import random_batch
from sqakd_edge.bench.measure import measure
from sqakd_edge.bench.runners import OrtRunner, Runner, TorchRunner
from sqakd_edge.bench.stats import speedup, summarize
from sqakd_edge.errors import ConfigError
from sqakd_edge.models import create_model

VARIANTS = ("fp32", "int8-trt", "int8-ort", "int8-ort-int", "ort-qs", "ort-qs-u8", "eager")
DESCRIPTIONS = {
    "fp32": "ORT FP32",
    "int8-trt": "our export --target tensorrt of the W4A4 student (s8 Q/DQ, symmetric)",
    "int8-ort": "our export --target onnxruntime of the W4A4 student (u8 act + s8 per-channel wt)",
    "int8-ort-int": "the same with the student's first and last layer quantized at 8 bits (train "
                    "--first-last-bits 8): an all-integer graph",
    "ort-qs": "ORT quantize_static defaults (QDQ, s8/s8, per-tensor)",
    "ort-qs-u8": "ORT quantize_static, u8 act + s8 per-channel wt (its best options here)",
    "eager": "PyTorch eager FP32",
}
# (baseline, candidate) pairs reported for every configuration.
PAIRS = (("fp32", "int8-trt"), ("fp32", "int8-ort"), ("fp32", "int8-ort-int"), ("fp32", "ort-qs"),
         ("fp32", "ort-qs-u8"), ("ort-qs", "int8-ort"), ("ort-qs-u8", "int8-ort"), ("ort-qs-u8", "int8-ort-int"),
         ("eager", "int8-ort"), ("eager", "fp32"))


def tiny_imagenet_resnet18() -> tuple[nn.Module, str]:
    """ResNet-18 for 64x64 Tiny-ImageNet: from the registry once it has it, else built here."""
    try:
        return create_model("resnet18", num_classes=200), "sqakd_edge.models.create_model('resnet18', 200)"
    except ConfigError:
        pass
    # STAND-IN until the model helper registers 'resnet18': torchvision's ResNet-18 with the usual
    # Tiny-ImageNet adaptation (3x3 stride-1 stem, no max-pool), as in FACTS.md's table.
    import torchvision

    model = torchvision.models.resnet18(num_classes=200)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model, "torchvision resnet18(num_classes=200), conv1 3x3 stride 1, maxpool removed (built in this script)"


MODEL_NAMES = {"resnet18-tinyimagenet": "resnet18", "resnet20-cifar": "resnet20"}
NUM_CLASSES = {"resnet18-tinyimagenet": 200, "resnet20-cifar": 10}
MODELS = {
    "resnet18-tinyimagenet": (tiny_imagenet_resnet18, (3, 64, 64)),
    "resnet20-cifar": (lambda: (create_model("resnet20", num_classes=10), "sqakd_edge.models.create_model('resnet20')"),
                       (3, 32, 32)),
}


def trained_like_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm distinct statistics and affine parameters, as training would.

    Why: freshly initialised BNs fold into identical all-zero conv biases, which the ONNX exporter
    deduplicates into one shared initializer; quantize_static cannot give a shared bias one int32
    scale per conv, so ONNX Runtime cannot fuse those convs into QLinearConv and the INT8 graph
    would run mostly in float -- an artefact of random weights, not of INT8.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
    return model


def export_fp32(model: nn.Module, shape: tuple[int, int, int], path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), dynamo=False, opset_version=13,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def quantize(fp32: Path, out: Path, shape: tuple[int, int, int], style: str) -> None:
    """ONNX Runtime's own quantize_static, calibrated on 32 standard-normal images."""
    import logging

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's "consider pre-processing" notice
    rng = np.random.default_rng(0)
    batches = [{"input": rng.standard_normal((8, *shape), dtype=np.float32)} for _ in range(4)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self):  # noqa: ANN201
            return next(self.it, None)

    kwargs: dict[str, Any] = {}  # the defaults a user gets
    if style == "ort-qs-u8":
        kwargs = dict(quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                      weight_type=QuantType.QInt8, extra_options={"WeightSymmetric": True})
    quantize_static(str(fp32), str(out), Reader(), **kwargs)


def export_student(model: nn.Module, name: str, shape: tuple[int, int, int], num_classes: int, target: str,
                   out_dir: Path, first_last_bits: int = 0, quantizer: str = "lsq") -> tuple[Path, dict[str, Any]]:
    """``sqakd-edge export --int8`` of the model's W4A4 ``quantizer`` student (the CLI's defaults, or its first and
    last layer at ``first_last_bits``): graph, parity."""
    from sqakd_edge.config import QuantConfig
    from sqakd_edge.export.api import ExportConfig, ExportInputs, export_model
    from sqakd_edge.export.inputs import ParityData
    from sqakd_edge.quant import prepare_qat

    torch.manual_seed(0)
    quant = QuantConfig(quantizer=quantizer, keep_first_last_float=False, first_last_bits=first_last_bits) \
        if first_last_bits else QuantConfig(quantizer=quantizer)
    student = prepare_qat(model, quant).eval()
    x = torch.randn(16, *shape)
    with torch.no_grad():
        student(x)  # quantizer ranges from one batch
    config = ExportConfig(target=target, input_shape=(1, *shape), parity_samples=16, fp32_parity_samples=4,
                          fail_on_parity_miss=False)
    meta = {"name": name, "num_classes": num_classes, "in_channels": shape[0], "input_size": shape[-1]}
    result = export_model(ExportInputs(meta, student=student, float_model=model), out_dir, config,
                          parity_data=ParityData(x, None, None, "standard-normal", None), log=lambda _m: None)
    return out_dir / "model.int8.onnx", result.manifest["parity"]["int8"]


def run_config(paths: dict[str, Path], model: nn.Module, shape: tuple[int, int, int], batch: int, threads: int,
               args: argparse.Namespace) -> dict[str, Any]:
    runners: list[Runner] = [OrtRunner(paths[v], name=v, threads=threads,
                                       precision_requested="fp32" if v == "fp32" else "int8") for v in VARIANTS[:-1]]
    runners.append(TorchRunner(model, name="eager", threads=threads))
    x = random_batch(shape, batch, seed=0)
    load_before = load_average()
    for r in runners:
        r.activate()
    try:
        measure(runners, x, warmup_iters=args.warmup, iters=1, round_iters=1)  # warm-up + one timed round
        started = time.perf_counter()
        measure(runners, x, warmup_iters=0, iters=1, round_iters=1)
        round_s = time.perf_counter() - started
        iters = int(min(args.max_iters, max(args.min_iters, args.budget / round_s)))
        round_iters = 1 if round_s > 0.5 else 10  # big batches alternate every iteration
        samples = measure(runners, x, warmup_iters=0, iters=iters, round_iters=round_iters)
        placement = {r.name: r.placement for r in runners if isinstance(r, OrtRunner)}
        ran = {r.name: r.precision_ran for r in runners}
    finally:
        for r in runners:
            r.deactivate()
    stats = {v: summarize(samples[v], batch).to_dict() for v in VARIANTS}
    ratios = []
    for base, cand in PAIRS:
        s = speedup(samples[base], samples[cand], seed=0)
        ratios.append({"baseline": base, "candidate": cand, "ratio": s.ratio, "ci95": [s.ci_low, s.ci_high],
                       "trustworthy": s.trustworthy, "warning": s.warning})
    return {"batch": batch, "threads": threads, "iters": iters, "round_iters": round_iters,
            "load_average": {"before": load_before, "after": load_average()}, "stats": stats,
            "precision_ran": ran, "placement": placement, "speedups": ratios,
            "samples_ms": {v: [round(float(t), 4) for t in samples[v]] for v in VARIANTS}}


def _ratio(config: dict[str, Any], base: str, cand: str) -> dict[str, Any]:
    return next(s for s in config["speedups"] if s["baseline"] == base and s["candidate"] == cand)


def _load(config: dict[str, Any]) -> str:
    before, after = config["load_average"]["before"], config["load_average"]["after"]
    return "?" if not before or not after else f"{before[0]:.1f}→{after[0]:.1f}"


def _fmt_ratio(s: dict[str, Any]) -> str:
    return f"{s['ratio']:.2f}× [{s['ci95'][0]:.2f}–{s['ci95'][1]:.2f}]" + ("" if s["trustworthy"] else " ⚠")


def render_markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    isa = ", ".join(k for k, v in (env["cpu"]["isa"] or {}).items() if v)
    out = ["# ONNX Runtime INT8 vs FP32 speed on this CPU", "",
           f"Measured {doc['created']} with `{doc['command']}` ({doc['runtime_s']:.0f} s).", "",
           f"CPU: {env['cpu']['model']}, {env['cpu']['logical_cores']} logical cores; ISA: {isa}. "
           f"onnxruntime {env['versions']['onnxruntime']}, torch {env['versions']['torch']}, "
           f"Python {env['python']}, sqakd-edge {env['git_commit'] or 'unknown commit'}.", "",
           "Median latency per batch in ms; speed-up = ratio of medians with a bootstrap 95% CI "
           "(⚠: not trustworthy by the bench's rule: < 20 iterations or CI wider than 20% of the ratio). "
           "`load` is the 1-minute load average before→after the configuration (other work on the machine).",
           "Variants: " + "; ".join(f"**{k}** = {v}" for k, v in DESCRIPTIONS.items()) + ".", "",
           f"INT8 graphs: {doc['int8_graphs']}", ""]
    for model in doc["models"]:
        out += [f"## {model['name']} ({model['input']})", "", f"Model: {model['source']}.", ""]
        par = model.get("parity", {})
        out += ["Parity of our graphs, top-1 agreement ORT opt off / on, on 16 random inputs of an untrained "
                "model (near-tied logits: a sanity check, not a parity measure; see export_time.md): "
                + "; ".join(f"{v} {p['off']['top1_agreement']:.2%} / {p['on']['top1_agreement']:.2%}"
                            for v, p in par.items()) + ".", ""] if par else []
        out += ["| batch | threads | iters | load | fp32 ms | int8-trt ms (× fp32) | int8-ort ms (× fp32) | "
                "int8-ort-int ms (× fp32) | ort-qs ms (× fp32) | ort-qs-u8 ms (× fp32) | eager ms | "
                "int8-ort × ort-qs | int8-ort × ort-qs-u8 | int8-ort-int × ort-qs-u8 | int8-ort × eager |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in model["configs"]:
            med = {v: c["stats"][v]["median_ms"] for v in VARIANTS}
            out.append(
                f"| {c['batch']} | {c['threads']} | {c['iters']} | {_load(c)} | {med['fp32']:.2f} | "
                f"{med['int8-trt']:.2f} ({_fmt_ratio(_ratio(c, 'fp32', 'int8-trt'))}) | "
                f"{med['int8-ort']:.2f} ({_fmt_ratio(_ratio(c, 'fp32', 'int8-ort'))}) | "
                f"{med['int8-ort-int']:.2f} ({_fmt_ratio(_ratio(c, 'fp32', 'int8-ort-int'))}) | "
                f"{med['ort-qs']:.2f} ({_fmt_ratio(_ratio(c, 'fp32', 'ort-qs'))}) | "
                f"{med['ort-qs-u8']:.2f} ({_fmt_ratio(_ratio(c, 'fp32', 'ort-qs-u8'))}) | {med['eager']:.2f} | "
                f"{_fmt_ratio(_ratio(c, 'ort-qs', 'int8-ort'))} | {_fmt_ratio(_ratio(c, 'ort-qs-u8', 'int8-ort'))} | "
                f"{_fmt_ratio(_ratio(c, 'ort-qs-u8', 'int8-ort-int'))} | "
                f"{_fmt_ratio(_ratio(c, 'eager', 'int8-ort'))} |")
        out += ["", "Layer placement in ONNX Runtime's optimised graph (weighted layers on integer kernels / in float; "
                "Q/DQ nodes left):", ""]
        first = model["configs"][0]["placement"]
        out += [f"- {v}: {p['int8_layers']} int8 / {p['float_layers']} float; {p['unfused_qdq']} Q/DQ left; "
                f"{p['op_counts'].get('Relu', 0)} Relu left" for v, p in first.items() if p]
        out.append("")
    out += ["## Targets (ResNet-18, 2 threads)", ""] + [f"- {t}" for t in doc["targets"]] + [""]
    out += ["## Reading the placement", ""] + [f"- {line}" for line in placement_analysis(doc)] + [""]
    return "\n".join(out)


def placement_analysis(doc: dict[str, Any]) -> list[str]:
    """Sentences on where each INT8 graph runs, from the operator counts of ORT's optimised graphs."""
    lines = []
    for model in doc["models"]:
        p = model["configs"][0]["placement"]
        total = p["fp32"]["float_layers"]
        parts = [f"{v} {p[v]['int8_layers']} ({p[v]['unfused_qdq']} Q/DQ, {p[v]['op_counts'].get('Relu', 0)} Relu "
                 f"left)" for v in VARIANTS if v not in ("fp32", "eager") and p.get(v)]
        lines.append(f"{model['name']}: of {total} weighted layers, on integer kernels: " + "; ".join(parts) + ".")
    lines += [
        "Our graphs keep the first and last layer float (the paper's policy; its student trains them in float), "
        "so two weighted layers run in float by design; quantize_static quantizes every layer. int8-ort-int "
        "quantizes them too, at 8 bits; its classifier still runs in float: the 8-bit deployable grid [0, 127] "
        "needs an integer Clip between its Q and DQ, and ORT's Gemm fusion takes only a bare Q -> DQ.",
        "On x86 ONNX Runtime's fast integer convolutions take u8 activations. With s8 activations (int8-trt, "
        "ort-qs) a ReLU between a conv and an s8 Q with zero-point 0 cannot fold into the Q, so those convs "
        "stay float between DQ and Q: the TensorRT graph is for TensorRT, not for this CPU.",
        "The residual quantizers the student trains (8-bit on each block's branch output; each block output "
        "quantized once, at 4 bits, by the quantizer the convs reading it share) give every residual conv a Q on "
        "its output and every residual Add dequantized inputs, so ORT fuses QLinearConv and QLinearAdd; without "
        "them half of ResNet-20's convs ran in float (0.5x FP32).",
        "What separated int8-ort from ort-qs-u8 before the shared residual stream: each conv re-quantized an "
        "8-bit block output to its 4-bit grid (DequantizeLinear -> QuantizeLinear -> integer Clip, with layout "
        "Transposes), ~35% of int8-ort's time at batch 32. Now ORT's optimised ResNet-18 graph is integer from "
        "the first block's input to the last block's output (19 QLinearConv, 8 QLinearAdd, one Q, one DQ); in "
        "an ORT profile at batch 32, 2 threads (benchmarks/ort_profile.py on a --keep-graphs copy), its "
        "QLinearConvs take 82% of the time, and as long as ort-qs-u8's. What is left: the float first conv "
        "(~5%, the paper's policy), layout Transposes in the "
        "first stage (~6%: the skip entering layer1 comes from the float NCHW stem, so ORT keeps that stage's "
        "Adds in NCHW around its NHWC integer convs) and the integer Clips that hold 4-bit grids in uint8 (~2%).",
        "Random weights need trained-like BatchNorm statistics: with freshly initialised BNs every folded conv bias is "
        "zero, the exporter shares one zero initializer among the convs, and a shared bias cannot get the per-conv "
        "int32 scale QLinearConv needs -- the script randomises BN statistics for that reason.",
    ]
    return lines


def check_targets(doc: dict[str, Any]) -> list[str]:
    r18 = next(m for m in doc["models"] if m["name"] == "resnet18-tinyimagenet")
    lines = []

    def config(batch: int) -> dict[str, Any] | None:
        return next((c for c in r18["configs"] if c["batch"] == batch and c["threads"] == 2), None)

    for text, batch, base, cand, goal in (
        ("int8-ort over ORT FP32, batch 32", 32, "fp32", "int8-ort", 2.2),
        ("int8-ort over ORT FP32, batch 1", 1, "fp32", "int8-ort", 1.8),
        ("int8-ort over quantize_static, batch 32", 32, "ort-qs", "int8-ort", 0.95),
        ("int8-ort over quantize_static, batch 1", 1, "ort-qs", "int8-ort", 0.95),
        ("int8-ort over quantize_static u8/s8 per-channel, batch 32", 32, "ort-qs-u8", "int8-ort", 0.95),
        ("int8-ort over quantize_static u8/s8 per-channel, batch 1", 1, "ort-qs-u8", "int8-ort", 0.95),
        ("int8-ort over PyTorch eager FP32, batch 32", 32, "eager", "int8-ort", 3.0),
        ("int8-ort-int (all-integer) over ORT FP32, batch 32", 32, "fp32", "int8-ort-int", 2.5),
        ("int8-ort-int over quantize_static u8/s8 per-channel, batch 32", 32, "ort-qs-u8", "int8-ort-int", 1.05),
        ("int8-ort-int over quantize_static u8/s8 per-channel, batch 1", 1, "ort-qs-u8", "int8-ort-int", 1.05),
    ):
        measured = config(batch)
        if measured is None:  # a partial run (--batches) did not measure this one
            lines.append(f"{text}: target ≥ {goal}×, not measured in this run")
            continue
        s = _ratio(measured, base, cand)
        verdict = "met" if s["ratio"] >= goal else "MISSED"
        lines.append(f"{text}: target ≥ {goal}×, measured {_fmt_ratio(s)} — {verdict}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations per variant")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timed rounds per configuration")
    parser.add_argument("--min-iters", type=int, default=20)
    parser.add_argument("--max-iters", type=int, default=300)
    parser.add_argument("--keep-graphs", type=Path, help="also copy every timed ONNX graph here (e.g. to profile "
                        "one with benchmarks/ort_profile.py)")
    parser.add_argument("--quantizer", default="lsq", choices=("lsq", "pact", "dorefa", "interval"),
                        help="the students' quantizer family (the backward does not change the graph)")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(0)
    models = []
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        for name in args.models.split(","):
            build, shape = MODELS[name]
            model, source = build()
            model = trained_like_batchnorm(model).eval()
            paths = {v: Path(tmp) / f"{name}.{v}.onnx" for v in VARIANTS[:-1]}
            export_fp32(model, shape, paths["fp32"])
            for v in ("ort-qs", "ort-qs-u8"):
                quantize(paths["fp32"], paths[v], shape, v)
            parity = {}
            for v, target, ends in (("int8-trt", "tensorrt", 0), ("int8-ort", "onnxruntime", 0),
                                    ("int8-ort-int", "onnxruntime", 8)):
                paths[v], parity[v] = export_student(model, MODEL_NAMES[name], shape, NUM_CLASSES[name], target,
                                                     Path(tmp) / f"{name}.{v}", first_last_bits=ends,
                                                     quantizer=args.quantizer)
            if args.keep_graphs:
                args.keep_graphs.mkdir(parents=True, exist_ok=True)
                for v, path in paths.items():
                    shutil.copyfile(path, args.keep_graphs / f"{name}.{v}.onnx")
            configs = []
            for batch in (int(b) for b in args.batches.split(",")):
                for threads in (int(t) for t in args.threads.split(",")):
                    c = run_config(paths, model, shape, batch, threads, args)
                    med = {v: round(c["stats"][v]["median_ms"], 2) for v in VARIANTS}
                    print(f"{name} batch {batch} threads {threads} ({c['iters']} iters): {med}", flush=True)
                    configs.append(c)
            models.append({"name": name, "input": list(shape), "source": source, "parity": parity,
                           "bytes": {v: p.stat().st_size for v, p in paths.items()}, "configs": configs})
    doc: dict[str, Any] = {
        "schema": "sqakd-edge.bench-speed", "schema_version": 1,
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "command": "PYTHONPATH=. python " + " ".join(["benchmarks/bench_speed.py", *sys.argv[1:]]),
        "runtime_s": time.perf_counter() - started,
        "quantizer": args.quantizer,
        "int8_graphs": (f"int8-trt and int8-ort are `sqakd-edge export --int8` of the model's W4A4 "
                        f"{args.quantizer} student (first and last layer float, 8-bit residual-branch "
                        "quantizers, a shared 4-bit residual stream; int8-ort-int: first and last layer at 8 "
                        "bits); ort-qs and ort-qs-u8 are onnxruntime.quantization.quantize_static of the float "
                        "model (QDQ, MinMax calibration on 32 standard-normal images)"),
        "variants": DESCRIPTIONS,
        "environment": collect_environment(threads=0),
        "models": models,
    }
    doc["environment"]["threads"] = [int(t) for t in args.threads.split(",")]
    doc["targets"] = check_targets(doc) if "resnet18-tinyimagenet" in args.models and "2" in args.threads else []
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "bench_speed" if args.quantizer == "lsq" else f"bench_speed.{args.quantizer}"
    atomic_write_json(args.out / f"{stem}.json", doc)
    atomic_write_text(args.out / f"{stem}.md", render_markdown(doc))
    print("\n".join(doc["targets"]))
    print(f"wrote {args.out / stem}.md and {stem}.json in {doc['runtime_s']:.0f} s")


if __name__ == "__main__":
    main()
