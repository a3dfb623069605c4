"""Wall time of ``sqakd-edge export --int8`` (parity included): Tiny-ImageNet ResNet-18 must take < 60 s.

    python benchmarks/export_time.py                      # ResNet-18 (200 classes, 3x64x64) and ResNet-20
    python benchmarks/export_time.py --models resnet18 --targets tensorrt onnxruntime --repeats 3

For each model it writes a W4A4 LSQ student checkpoint (random weights, quantizers initialised on one
batch: export time does not depend on training), then times ``export_checkpoint`` end to end — checkpoint
load, BN folding, lowering, ONNX export, checker, linter, parity of the int8 graph on ``--samples`` inputs
(ORT optimisations off and on) and of the float graph on 32, and the atomic write — in this process.
Parity inputs are seeded Gaussian images (no Tiny-ImageNet here; the time does not depend on the pixels).
The per-stage split comes from the manifest's ``timings_s``. Prints a Markdown table; ``--json`` saves rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sqakd_edge.checkpoint import FORMAT, VERSION, model_meta, save_checkpoint
from sqakd_edge.config import QuantConfig, TrainConfig, to_dict
from sqakd_edge.export.api import ExportConfig, export_checkpoint
from sqakd_edge.models import create_model
from sqakd_edge.quant import prepare_qat

MODELS = {"resnet18": (200, 3, 64), "resnet20": (10, 3, 32)}  # name -> classes, channels, size


def make_checkpoint(name: str, path: Path, quant: QuantConfig) -> None:
    classes, channels, size = MODELS[name]
    torch.manual_seed(0)
    student = prepare_qat(create_model(name, num_classes=classes, in_channels=channels), quant).eval()
    with torch.no_grad():
        student(torch.randn(32, channels, size, size))
    data = {"spec": "random", "name": "none", "mean": [0.0] * channels, "std": [1.0] * channels,
            "in_channels": channels, "input_size": size, "num_classes": classes}
    save_checkpoint({"format": FORMAT, "version": VERSION, "kind": "student",
                     "model": model_meta(name, classes, channels, size), "data": data, "quant": to_dict(quant),
                     "train": to_dict(TrainConfig()), "teacher": None, "state_dict": student.state_dict(),
                     "epoch": 0}, path)


def run(name: str, target: str, samples: int, work: Path, threads: int) -> dict[str, object]:
    ckpt = work / f"{name}.pt"
    if not ckpt.exists():
        make_checkpoint(name, ckpt, QuantConfig(quantizer="lsq", wbits=4, abits=4))
    config = ExportConfig(target=target, parity_samples=samples, fail_on_parity_miss=False, threads=threads)
    start = time.perf_counter()
    result = export_checkpoint(ckpt, work / f"out-{name}-{target}", config, force=True, log=lambda _m: None)
    seconds = time.perf_counter() - start
    parity = result.manifest["parity"]["int8"]
    return {"model": name, "target": target, "samples": samples, "seconds": round(seconds, 2),
            "stages": result.manifest["timings_s"], "int8_off": parity["off"]["top1_agreement"],
            "int8_on": parity["on"]["top1_agreement"], "kernels": parity["on"].get("kernels", {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--targets", nargs="+", default=["tensorrt", "onnxruntime"])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="export --threads (0: torch's and ORT's defaults)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"# export time: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, --threads "
          f"{args.threads or 'default'}, load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| model | target | parity inputs | wall s (median) | runs | stages (s, last run) |")
    print("|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.models:
            for target in args.targets:
                runs = [run(name, target, args.samples, work, args.threads) for _ in range(args.repeats)]
                median = statistics.median(r["seconds"] for r in runs)  # type: ignore[misc]
                stages = ", ".join(f"{k} {v:.1f}" for k, v in runs[-1]["stages"].items())  # type: ignore[union-attr]
                print(f"| {name} | {target} | {args.samples} | {median:.1f} | "
                      f"{', '.join(str(r['seconds']) for r in runs)} | {stages} |", flush=True)
                rows.extend(runs)
    load = os.getloadavg()
    print(f"\nload average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
