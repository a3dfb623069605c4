"""Seconds per training step: SQAKD (teacher forward + fake-quant student forward/backward) vs plain FP32.

CIFAR ResNet-20, 3x32x32 inputs, batch 128, Adam, on this machine's CPU (or CUDA when present).
Students are W4A4 with the CLI's residual quantizers (8-bit branch outputs, a shared 4-bit residual
stream); ``-paper`` kinds leave them out (the paper's student). The teacher runs as ``fit`` runs it
(``sqakd_edge.train.teacher``): Conv+BN folded, channels-last, and in bfloat16 on CPUs that compute it
natively (``--teacher-fp32`` times it in float32).
Steps are timed after warm-up, with the kinds interleaved round by round so machine drift cancels;
the ratio is of medians.

    python benchmarks/train_step.py [--batch 128] [--steps 15] [--threads N] [--out benchmarks/results/train_step.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from sqakd_edge.config import QuantConfig, TrainConfig
from sqakd_edge.models import create_model
from sqakd_edge.quant import prepare_qat
from sqakd_edge.train.loop import make_optimizer
from sqakd_edge.train.loss import kd_loss
from sqakd_edge.train.teacher import frozen_teacher, teacher_autocast_dtype


def make_step(kind: str, teacher: torch.nn.Module, batch: int, device: torch.device, amp: bool = True):
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    if kind == "fp32":
        model = create_model("resnet20", 10, 3).to(device).train()
        opt = make_optimizer(model, TrainConfig(method="fp"))

        def step():
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step
    family, backward, *rest = kind.split("-")[1:]
    residual_bits = 0 if rest == ["paper"] else 8  # -paper: the paper's student, no residual quantizers
    student = prepare_qat(teacher, QuantConfig(quantizer=family, backward=backward, wbits=4, abits=4,
                                               residual_bits=residual_bits)).to(device)
    student.eval()
    with torch.no_grad():
        student(x)  # initialise quantizer ranges
    student.train()
    opt = make_optimizer(student, TrainConfig())
    teacher = frozen_teacher(copy.deepcopy(teacher), device)  # as fit runs it: Conv+BN folded

    t_dtype = teacher_autocast_dtype(device, amp)

    def step():
        with torch.no_grad(), torch.autocast(device.type, dtype=t_dtype or torch.float32, enabled=t_dtype is not None):
            t_logits = teacher(x).float()
        loss = kd_loss(student(x), t_logits, 4.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--kinds", default="fp32,sqakd-lsq-ste,sqakd-pact-ste,sqakd-dorefa-ste,sqakd-interval-ste,"
                                           "sqakd-lsq-ewgs,sqakd-lsq-ste-paper")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--teacher-fp32", action="store_true", help="teacher forward in float32 (fit's --no-amp)")
    parser.add_argument("--out", default="benchmarks/results/train_step.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    teacher = create_model("resnet20", 10, 3).to(device).eval()
    kinds = args.kinds.split(",")
    steps = {k: make_step(k, teacher, args.batch, device, not args.teacher_fp32) for k in kinds}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.warmup):
        for k in kinds:
            steps[k]()
    for _ in range(args.steps):
        for k in kinds:  # interleaved: drift hits every kind alike
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            steps[k]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["fp32"])
    rows = []
    for k in kinds:
        med = statistics.median(times[k])
        rows.append({"kind": k, "median_s": med, "p90_s": sorted(times[k])[int(0.9 * (len(times[k]) - 1))],
                     "images_per_s": args.batch / med, "ratio_to_fp32": med / base})
    doc = {"command": "python benchmarks/train_step.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()
                                                                       if k != "kinds"),
           "device": str(device), "load_average": list(os.getloadavg()),
           "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "teacher_autocast": str(teacher_autocast_dtype(device, not args.teacher_fp32)),
           "batch": args.batch, "steps": args.steps, "rows": rows}
    print(f"{'kind':<22} {'median s':>9} {'img/s':>8} {'x fp32':>7}")
    for r in rows:
        print(f"{r['kind']:<22} {r['median_s']:>9.4f} {r['images_per_s']:>8.0f} {r['ratio_to_fp32']:>7.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
