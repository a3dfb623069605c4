"""Seconds per training step as ``fit`` runs it: SQAKD students of each quantizer family vs the float model.

CIFAR ResNet-20 on CIFAR-10-shaped data (50,000 random uint8 images in memory, read through the CLI's own
CIFAR training transform: random crop with padding 4, flip, normalise), W4A4 students with the CLI's
residual quantizers; ``-paper`` kinds leave those out (the paper's student). Each step is the body of
``fit``'s epoch loop (``sqakd_edge.train.loop``): the next batch from a ``DataLoader`` like fit's (data
loading included), ``DistillationTask`` (the frozen teacher as fit runs it: Conv+BN folded, channels-last,
bfloat16 on CPUs that compute it natively; ``--teacher-fp32`` for float32), the loss, the backward and
Adam. ``fit`` re-estimates EWGS deltas once per epoch; that update is timed on its own and added, amortised
over a CIFAR-10 epoch (45,000 training images at this batch). The process's malloc is set as ``fit`` sets
it (``sqakd_edge.train.allocator``) and models train channels-last on CPU as in ``fit`` (``.layout``);
``--malloc default`` keeps glibc's own settings, ``--layout teacher`` puts only the teacher in channels-last
(together: fit as it ran before these two), ``--layout default`` neither. ``--no-augment`` reads the images
as fit does with augmentation off, where fit keeps the teacher's logits across epochs
(``sqakd_edge.train.teacher_cache``): a kind named with ``+cache`` (``sqakd-lsq-ste+cache``) reads them from
a table filled beforehand, as every step from the second epoch on does; without the suffix the teacher runs
every step (fit before the cache), interleaved with the cached kind. A kind named with ``+unfolded`` trains
the student with its ReLUs applied, as fit did before it folded them into the quantizers on CPU
(``sqakd_edge.quant.relu_fold``); suffixes combine (``sqakd-lsq-ste+cache+unfolded``).

Steps are timed after warm-up, the kinds interleaved round by round so machine drift hits all alike;
ratios are of medians. ``--batch`` and ``--threads`` take comma-separated sweeps.

    python benchmarks/train_step.py [--batch 128,256] [--threads 1,2] [--steps 10] [--no-augment] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from sqakd_edge.bench.environment import collect_environment, load_average
from sqakd_edge.config import QuantConfig, TrainConfig
from sqakd_edge.data.cifar import CIFAR10, NATIVE_PAD, NATIVE_SIZE
from sqakd_edge.data.info import ArrayDataset
from sqakd_edge.data.transforms import crop_flip_transform
from sqakd_edge.models import create_model
from sqakd_edge.quant import initialize_quantizers, prepare_qat
from sqakd_edge.train.allocator import reuse_freed_memory
from sqakd_edge.train.distributed import DistInfo
from sqakd_edge.train.layout import in_layout, training_layout
from sqakd_edge.train.loop import make_optimizer, training_module
from sqakd_edge.train.task import DistillationTask
from sqakd_edge.train.teacher import teacher_autocast_dtype
from sqakd_edge.train.teacher_cache import IndexedDataset, TeacherLogitCache

KINDS = ("fp32,sqakd-lsq-ste,sqakd-pact-ste,sqakd-dorefa-ste,sqakd-interval-ste,sqakd-interval-ewgs,"
         "sqakd-lsq-ste-paper")
TRAIN_IMAGES = 45_000  # CIFAR-10's training set less fit's 10% held out: the epoch EWGS updates amortise over


def cifar_like_data(n: int = 50_000, seed: int = 0, augment: bool = True) -> ArrayDataset:
    """Random CIFAR-10-shaped uint8 images with the CLI's CIFAR training transform (or its plain one)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, NATIVE_SIZE, NATIVE_SIZE), dtype=np.uint8)
    transform = crop_flip_transform(size=NATIVE_SIZE, native_size=NATIVE_SIZE, pad=NATIVE_PAD, flip=True,
                                    mean=CIFAR10.mean, std=CIFAR10.std, augment=augment)
    return ArrayDataset(images, rng.integers(0, 10, n), transform)


def endless(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        yield from loader


class Kind:
    """One model trained as ``fit`` trains it: a step, and (for EWGS students) the per-epoch delta update."""

    def __init__(self, kind: str, teacher: torch.nn.Module, data: ArrayDataset, batch: int, device: torch.device,
                 amp: bool, layout: str, cache: bool = False, fold: bool = True) -> None:
        """``cache``: the teacher's logits read from a table filled beforehand (fit without augmentation).

        ``fold``: the ReLUs folded into the quantizers on CPU, as fit trains (False: fit before that).
        """
        source = IndexedDataset(data) if cache else data
        self.batches = endless(DataLoader(source, batch_size=batch, sampler=RandomSampler(data), drop_last=True))
        self.ewgs = kind.endswith("-ewgs") or "-ewgs-" in kind
        first = next(self.batches)[0].to(device)
        quant = None
        if kind == "fp32":
            config = TrainConfig(method="fp", amp=amp)
            self.student = create_model("resnet20", 10, 3).to(device)
        else:
            family, backward, *rest = kind.split("-")[1:]
            residual_bits = 0 if rest == ["paper"] else 8  # -paper: the paper's student, no residual quantizers
            quant = QuantConfig(quantizer=family, backward=backward, wbits=4, abits=4, residual_bits=residual_bits)
            config = TrainConfig(amp=amp)
            self.student = prepare_qat(teacher, quant).to(device)
            initialize_quantizers(self.student, first)
        # "fit": both channels-last where they run in it; "teacher": only the teacher (the layout before);
        # "default": neither
        student_layout = training_layout(self.student, first if layout == "fit" else None, device)
        teacher_cache = TeacherLogitCache(len(data), device) if cache else None
        model = training_module(self.student, DistInfo(), device) if fold else self.student
        self.task = DistillationTask(model, config, copy.deepcopy(teacher) if quant else None, device, quant,
                                     sample=first if layout != "default" else None, student_layout=student_layout,
                                     teacher_cache=teacher_cache)
        if teacher_cache is not None:  # the table as the first epoch leaves it
            for images, _, indices in DataLoader(source, batch_size=512):
                self.task.teacher_logits(in_layout(images.to(device), student_layout), indices)
        self.optimizer = make_optimizer(self.student, config)
        self.device = device
        self.task.train()

    def _next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        images, labels, *indices = next(self.batches)
        return images.to(self.device), labels.to(self.device), indices[0] if indices else None

    def step(self) -> None:
        """The body of ``fit``'s epoch loop (less the learning-rate schedule and the progress bar)."""
        images, labels, indices = self._next()
        loss = self.task(images, labels, indices)["loss"]
        if not torch.isfinite(loss):
            raise RuntimeError("the loss is not finite")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        float(loss.detach())  # fit reads the loss every step (a device sync on CUDA)

    def ewgs_update(self) -> None:
        images, labels, indices = self._next()
        self.task.update_ewgs(self.student, images, labels, indices)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def measure(kinds: list[str], batch: int, threads: int, args: argparse.Namespace, device: torch.device,
            data: ArrayDataset) -> list[dict[str, Any]]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    teacher = create_model("resnet20", 10, 3).to(device).eval()
    runs = {k: Kind(k.split("+")[0], teacher, data, batch, device, not args.teacher_fp32, args.layout,
                    cache="cache" in k.split("+")[1:], fold="unfolded" not in k.split("+")[1:]) for k in kinds}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.warmup):
        for run in runs.values():
            run.step()
    for _ in range(args.steps):
        for k, run in runs.items():  # interleaved: drift hits every kind alike
            times[k].append(timed(run.step, device))
    updates = {k: statistics.median(timed(run.ewgs_update, device) for _ in range(3))
               for k, run in runs.items() if run.ewgs}
    steps_per_epoch = TRAIN_IMAGES // batch
    base = statistics.median(times["fp32"]) if "fp32" in times else None
    rows = []
    for k in kinds:
        step = statistics.median(times[k])
        amortised = updates.get(k, 0.0) / steps_per_epoch
        row = {"kind": k, "batch": batch, "threads": threads, "median_s": step,
               "p90_s": sorted(times[k])[int(0.9 * (len(times[k]) - 1))], "ewgs_update_s": updates.get(k),
               "fit_step_s": step + amortised, "images_per_s": batch / (step + amortised)}
        if base:
            row["ratio_to_fp32"] = (step + amortised) / base
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", default="256", help="batch sizes, comma-separated")
    parser.add_argument("--threads", default="0", help="torch intra-op threads, comma-separated (0: torch's default)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--kinds", default=KINDS)
    parser.add_argument("--teacher-fp32", action="store_true", help="teacher forward in float32 (fit's --no-amp)")
    parser.add_argument("--malloc", choices=("fit", "default"), default="fit",
                        help="fit: malloc set as fit sets it; default: glibc's own settings")
    parser.add_argument("--layout", choices=("fit", "teacher", "default"), default="fit",
                        help="fit: channels-last on CPU as fit runs it; teacher: only the teacher (as fit ran before); "
                             "default: the default layout throughout")
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="images read as fit reads them with augmentation off; kinds named KIND+cache read the "
                             "teacher's logits from fit's cache, as from the second epoch on")
    parser.add_argument("--out", default="benchmarks/results/train_step.json")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    unknown = sorted({s for k in kinds for s in k.split("+")[1:]} - {"cache", "unfolded"})
    if unknown:
        parser.error(f"unknown kind suffix(es) {', '.join('+' + s for s in unknown)}; known: +cache, +unfolded")
    if any("+cache" in k for k in kinds) and (args.augment or any(k.startswith("fp32+") for k in kinds)):
        parser.error("+cache kinds need --no-augment (fit caches the teacher's logits only without augmentation) "
                     "and a teacher (not fp32)")
    default_threads = torch.get_num_threads()
    malloc_tuned = reuse_freed_memory() if args.malloc == "fit" else False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = cifar_like_data(augment=args.augment)
    rows = []
    for threads in [int(t) or default_threads for t in args.threads.split(",")]:
        for batch in [int(b) for b in args.batch.split(",")]:
            rows += measure(kinds, batch, threads, args, device, data)
    doc = {"command": shlex.join(["python", "benchmarks/train_step.py", *sys.argv[1:]]),
           "device": str(device), "malloc_tuned": malloc_tuned, "layout": args.layout, "augment": args.augment,
           "teacher_autocast": str(teacher_autocast_dtype(device, not args.teacher_fp32)),
           "torch": torch.__version__, "steps": args.steps, "load_average_after": load_average(),
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "environment": collect_environment(threads=default_threads), "rows": rows}
    print(f"{'kind':<22} {'batch':>5} {'thr':>3} {'step s':>8} {'ewgs upd s':>10} {'fit step s':>10} {'x fp32':>7}")
    for r in rows:
        update = f"{r['ewgs_update_s']:.2f}" if r["ewgs_update_s"] is not None else "-"
        ratio = f"{r['ratio_to_fp32']:.2f}" if "ratio_to_fp32" in r else "-"
        print(f"{r['kind']:<22} {r['batch']:>5} {r['threads']:>3} {r['median_s']:>8.4f} {update:>10} "
              f"{r['fit_step_s']:>10.4f} {ratio:>7}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
