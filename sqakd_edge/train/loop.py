"""The training loop: ``fit`` for float teachers and QAT students.

One step's forward and losses are :class:`~.task.DistillationTask`; the output folder is :mod:`.run_dir`;
resuming is :mod:`.resume`; the per-epoch evaluation is :mod:`.evaluation`.

Model selection never reads labels under SQAKD: the checkpoint kept as ``best.pt`` has the lowest
training loss on data held out from the training set, which for SQAKD is the KL to the teacher.
Labelled accuracy is measured whenever labels exist and reported, never used to choose.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from .. import __version__
from ..checkpoint import FORMAT, VERSION, save_checkpoint
from ..config import QuantConfig, TrainConfig, to_dict
from ..errors import ConfigError, DataError, TrainingError, first_line
from ..quant import cpu_kernels, initialize_quantizers
from ..quant.relu_fold import fold_relus
from .allocator import reuse_freed_memory
from .distributed import DistInfo, all_reduce_sum, broadcast_buffers, device_for, gather_objects
from .evaluation import device_batches, evaluate, evaluation_share
from .layout import restore_default_layout, training_layout
from .resume import LoopState, resume_run
from .run_dir import copy_atomic, prepare_run_dir, replacing_run, write_metrics, write_summary
from .task import DistillationTask
from .teacher_cache import IndexedDataset, TeacherLogitCache


@dataclass
class FitResult:
    """What ``fit`` produced."""

    out_dir: Path
    best_path: Path
    last_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class RunData:
    """The data of one run: augmented training split, held-out split, and an optional test split."""

    train: Dataset
    held_out: Dataset | None
    test: Dataset | None
    labelled: bool
    meta: dict[str, Any]


def split_held_out(train_augmented: Dataset, train_plain: Dataset, fraction: float, seed: int
                   ) -> tuple[Dataset, Dataset | None]:
    """Hold out ``fraction`` of the training set (deterministic in ``seed``) for model selection.

    The held-out part is read without augmentation, the rest with it.
    """
    n = len(train_augmented)  # type: ignore[arg-type]
    n_held = int(round(n * fraction))
    if n_held == 0:
        return train_augmented, None
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    return Subset(train_augmented, order[n_held:]), Subset(train_plain, order[:n_held])


def _lr_factor(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 0 (or constant)."""
    if config.warmup_iters and step < config.warmup_iters:
        return (step + 1) / config.warmup_iters
    if config.schedule == "constant":
        return 1.0
    span = max(1, total - config.warmup_iters)
    progress = min(1.0, (step - config.warmup_iters) / span)
    return 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Two parameter groups: model weights (lr, weight decay) and quantizer parameters (quant_lr, no decay)."""
    weights: list[nn.Parameter] = []
    quant: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (quant if "quantizer." in name else weights).append(p)
    groups = [{"params": weights, "lr": config.lr, "weight_decay": config.weight_decay, "base_lr": config.lr}]
    if quant:
        groups.append({"params": quant, "lr": config.quant_lr, "weight_decay": 0.0, "base_lr": config.quant_lr})
    if config.optimizer == "adam":
        return torch.optim.Adam(groups)
    return torch.optim.SGD(groups, momentum=config.momentum, nesterov=config.nesterov)


def training_module(student: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """What a training step calls: the student (on CPU its ReLUs folded into its quantizers) under DDP if distributed.

    The folded view holds the student's own modules and computes its numbers bit for bit (``quant.relu_fold``).
    """
    model = fold_relus(student) if device.type == "cpu" else student
    if info.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return model


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm of ``model`` in eval mode: it normalises by its running statistics, left unchanged."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def fit(
    student: nn.Module,
    data: RunData,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    model_meta: dict[str, Any],
    teacher: nn.Module | None = None,
    teacher_meta: dict[str, Any] | None = None,
    quant: QuantConfig | None = None,
    quant_plan: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    dist_info: DistInfo | None = None,
    log: Callable[[str], None] = print,
) -> FitResult:
    """Train ``student`` (a float model for ``method="fp"``, else a fake-quant student) and checkpoint it.

    Args:
        student: the model to train; for QAT methods it should start from the teacher's weights.
        data: training, held-out and test splits.
        config: method, optimiser, schedule.
        out_dir: where ``last.pt``, ``best.pt``, ``metrics.jsonl`` and ``summary.json`` go.
        model_meta: the ``model`` block of the checkpoints (see ``checkpoint.model_meta``).
        teacher: the frozen float teacher (SQAKD and CE+KD).
        teacher_meta: what to record about the teacher (path, hash); never its weights.
        quant: the student's quantization config (None for float models).
        quant_plan: which layers are quantized and why the others stay float (for ``summary.json``).
        options: the resolved CLI options by command (``{"train": {...}}``), recorded in ``summary.json`` so
            ``--config summary.json`` repeats the run.
        resume: continue from ``out_dir/last.pt``.
        force: replace a run already in ``out_dir``.
        progress: show a progress bar.
        dist_info: the torchrun process group (None: one process).
        log: where one-line messages go.

    With ``force``, the run already in ``out_dir`` is moved aside first and restored if the new run fails
    before writing its first checkpoint (``run_dir.replacing_run``).

    Returns:
        A :class:`FitResult`.

    Raises:
        ConfigError: an output dir holding another run, a resume that does not match.
        DataError: a labelled method on unlabeled data, a batch larger than the data.
        TrainingError: the loss became NaN or infinite (the last good checkpoint is kept).
    """
    info = dist_info or DistInfo()
    out = Path(out_dir)
    record = RunRecord(model_meta, teacher_meta, quant, quant_plan, options)
    with replacing_run(out, force=force, resume=resume, info=info, log=log):
        try:
            return _fit(student, teacher, data, config, out, record, resume=resume, force=force, progress=progress,
                        info=info, log=log)
        finally:
            restore_default_layout(student)  # training may have run it channels-last (.layout)


@dataclass(frozen=True)
class RunRecord:
    """What a run writes about itself next to the weights (checkpoint header, ``summary.json``)."""

    model_meta: dict[str, Any]
    teacher_meta: dict[str, Any] | None
    quant: QuantConfig | None
    quant_plan: dict[str, Any] | None
    options: dict[str, Any] | None


def _fit(student: nn.Module, teacher: nn.Module | None, data: RunData, config: TrainConfig, out: Path,
         record: RunRecord, *, resume: bool, force: bool, progress: bool, info: DistInfo,
         log: Callable[[str], None]) -> FitResult:
    """:func:`fit` inside its run folder: check, set up, train epoch by epoch, checkpoint, summarise."""
    device = device_for(info)
    _check_run(data, config, teacher, info)
    per_rank_batch = config.batch_size // info.world_size
    resume_from = prepare_run_dir(out, resume=resume, force=force, info=info)
    if info.is_main and data.labelled and data.test is None and data.meta.get("test_missing"):
        log(f"note: no test split ({data.meta['test_missing']}); test accuracy is not reported, selection uses "
            "the held-out part of the training data")

    reuse_freed_memory()  # each step reuses the last one's tensor memory (see .allocator)
    torch.manual_seed(config.seed + info.rank)
    student.to(device)
    sampler: DistributedSampler = DistributedSampler(
        data.train, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed, drop_last=True
    )
    # Augmentation off: the frozen teacher sees the same input for an example every epoch (.teacher_cache)
    cache_teacher = teacher is not None and config.uses_teacher and not config.augment
    teacher_cache = TeacherLogitCache(len(data.train), device) if cache_teacher else None  # type: ignore[arg-type]
    loader = DataLoader(IndexedDataset(data.train) if teacher_cache is not None else data.train,
                        batch_size=per_rank_batch, sampler=sampler, drop_last=True,
                        num_workers=config.num_workers, pin_memory=device.type == "cuda",
                        persistent_workers=config.num_workers > 0)
    kind = "fp" if config.method == "fp" else "student"
    header: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "kind": kind, "model": record.model_meta, "data": data.meta,
        "quant": to_dict(record.quant) if record.quant is not None else None, "train": to_dict(config),
        "teacher": record.teacher_meta, "sqakd_edge_version": __version__,
    }
    # Quantizer ranges from the first global batch, before the optimiser and DDP exist, so every process starts
    # from rank 0's values (DDP broadcasts parameters and buffers at construction) and N processes start where
    # one would. A float model has none to set, but takes the same pass: a run's random stream (augmentation)
    # does not depend on whether the model is quantized.
    first_images, _ = next(iter(DataLoader(data.train, batch_size=config.batch_size, shuffle=False)))
    if device.type == "cpu" and record.quant is not None and cpu_kernels.needs_build():
        if info.is_main:
            log("building the fused CPU fake-quant kernels (once per machine and torch version, ~30 s)")
        cpu_kernels.kernels()
    initialize_quantizers(student, first_images.to(device))
    student_layout = training_layout(student, first_images, device)  # before the optimiser, DDP and resume

    optimizer = make_optimizer(student, config)
    state = LoopState()
    if resume_from is not None:
        state = resume_run(resume_from, header, student, optimizer, config, info)
        if info.is_main:
            log(f"resuming {resume_from} after epoch {state.epoch}")
        if state.epoch >= config.epochs:
            log(f"nothing to do: the run already finished its {config.epochs} epochs")

    model = training_module(student, info, device)
    task = DistillationTask(model, config, teacher, device, record.quant, sample=first_images,
                            student_layout=student_layout, teacher_cache=teacher_cache)
    scaler = torch.amp.GradScaler("cuda", enabled=task.needs_grad_scaler)
    eval_teacher = task.teacher

    start = time.perf_counter()
    last_path, best_path = out / "last.pt", out / "best.pt"
    first_epoch = state.epoch
    eval_caches: dict[str, TeacherLogitCache] = {}  # the held-out and test splits' teacher logits
    for epoch in range(first_epoch, config.epochs):
        sampler.set_epoch(epoch)
        row = _train_epoch(task, student, loader, optimizer, scaler, state, epoch, config, info, device,
                           progress, last_path)
        broadcast_buffers(student, info)  # every process evaluates rank 0's model, the one saved below
        row.update(_held_out_metrics(student, data, config, eval_teacher, info, device, eval_caches))
        improved = _select(row, state, epoch)
        state.history.append(row)
        state.epoch = epoch + 1
        rng_states = gather_objects(torch.get_rng_state(), info)  # collective: every process calls it
        if info.is_main:
            checkpoint = {**header, "state_dict": student.state_dict(), "optimizer": optimizer.state_dict(),
                          "epoch": state.epoch, "step": state.step, "history": state.history, "best": state.best,
                          "rng": {"torch": rng_states[0], "torch_per_rank": rng_states}}
            _save_epoch(out, checkpoint, state, improved)
            log(_epoch_line(row, config))
            if teacher_cache is not None and teacher_cache.off and epoch == first_epoch:
                log(f"note: {teacher_cache.off}")
    seconds = time.perf_counter() - start
    if info.is_main:
        summary = {"method": config.method, "epochs": config.epochs, "best": state.best,
                   "last": state.history[-1] if state.history else {}, "seconds": seconds,
                   "quant": header["quant"], "model": record.model_meta,
                   # whether steps after the first epoch read the teacher's logits back (augmentation off)
                   "teacher_logits_cached": teacher_cache is not None and teacher_cache.off is None,
                   **({"layers": record.quant_plan} if record.quant_plan is not None else {}),
                   **({"options": record.options} if record.options is not None else {})}
        write_summary(out, summary)
    return FitResult(out, best_path, last_path, state.history, state.best, seconds)


def _check_run(data: RunData, config: TrainConfig, teacher: nn.Module | None, info: DistInfo) -> None:
    """What must hold before anything is written: labels, a teacher, and batches that fit."""
    if config.uses_labels and not data.labelled:
        raise DataError(f"method {config.method!r} needs labels but the data has none; use --method sqakd "
                        "(label-free) or labelled data")
    if config.uses_teacher and teacher is None:
        raise ConfigError(f"method {config.method!r} needs a teacher; pass --teacher CKPT")
    if config.batch_size % info.world_size:
        raise ConfigError(f"batch size {config.batch_size} does not divide over {info.world_size} processes; "
                          f"use a multiple of {info.world_size}")
    n_train = len(data.train)  # type: ignore[arg-type]
    if n_train < config.batch_size:
        raise DataError(f"the training split has {n_train} examples, fewer than one batch of {config.batch_size}; "
                        "lower --batch-size or add data")


def _held_out_metrics(student: nn.Module, data: RunData, config: TrainConfig, teacher: nn.Module | None,
                      info: DistInfo, device: torch.device, caches: dict[str, TeacherLogitCache]) -> dict[str, Any]:
    """``val_*`` (held-out training data) and ``test_*`` (labelled test split) metrics of one epoch.

    ``caches``: the teacher's logits of each split, kept from one epoch to the next (filled here).
    """
    row: dict[str, Any] = {}
    splits = {"val": (data.held_out, data.labelled), "test": (data.test if data.labelled else None, True)}
    for prefix, (split, labelled) in splits.items():
        if split is None:
            continue
        if teacher is not None and prefix not in caches:
            caches[prefix] = TeacherLogitCache(len(evaluation_share(split, info)), device)
        metrics = evaluate(student, split, config, teacher=teacher, labelled=labelled, dist_info=info, device=device,
                           teacher_cache=caches.get(prefix))
        row.update({f"{prefix}_{k}": v for k, v in metrics.items() if k != "n"})
    return row


def _select(row: dict[str, Any], state: LoopState, epoch: int) -> bool:
    """Whether this epoch is the best so far (recorded in ``state`` and ``row``).

    Selection is by the method's own loss on held-out training data (the KL for SQAKD: no labels), by the
    training loss where nothing is held out.
    """
    score = row.get("val_loss", row["train_loss"])
    improved = not state.best or score < state.best["score"]
    if improved:
        state.best = {"epoch": epoch + 1, "score": score, "metric": "val_loss" if "val_loss" in row else "train_loss"}
    row["best_epoch"] = state.best["epoch"]
    return improved


def _train_epoch(task: DistillationTask, student: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, state: LoopState, epoch: int, config: TrainConfig, info: DistInfo,
                 device: torch.device, progress: bool, last_path: Path) -> dict[str, Any]:
    """One pass over the training data; returns the epoch's row (loss, speed, lr) and advances ``state.step``."""
    task.train()
    if config.freeze_bn:
        freeze_batchnorm(student)
    total_steps = len(loader) * config.epochs
    sums = {"loss": 0.0, "n": 0.0}
    epoch_start = time.perf_counter()
    bar = None
    if progress and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{config.epochs}", unit="it", leave=False,
                   dynamic_ncols=True)
    for i, (images, labels, indices) in enumerate(device_batches(loader, device)):
        if task.wants_ewgs_update(state.step, i):
            task.update_ewgs(student, images, labels, indices)
        factor = _lr_factor(state.step, total_steps, config)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        loss = task(images, labels, indices)["loss"]
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {float(loss.detach())} at epoch {epoch + 1}, step {i + 1}; "
                + (f"the last good checkpoint {last_path} is kept; " if last_path.exists() else "")
                + "lower the learning rate (--lr/--quant-lr) or check the data"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        state.step += 1
        sums["loss"] += float(loss.detach()) * images.shape[0]
        sums["n"] += images.shape[0]
        if bar is not None:
            rate = sums["n"] * info.world_size / max(time.perf_counter() - epoch_start, 1e-9)
            bar.set_postfix(loss=f"{sums['loss'] / sums['n']:.4f}", img_s=f"{rate:.0f}")
            bar.update()
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - epoch_start
    loss_sum, n_sum = all_reduce_sum([sums["loss"], sums["n"]], info, device)
    return {"epoch": epoch + 1, "step": state.step, "train_loss": loss_sum / max(n_sum, 1),
            "images_per_s": n_sum / max(seconds, 1e-9), "lr": optimizer.param_groups[0]["lr"]}


def _save_epoch(out: Path, checkpoint: dict[str, Any], state: LoopState, improved: bool) -> None:
    """``last.pt`` (and ``best.pt`` when it improved) and the metrics; a full disk is one line, nothing lost."""
    last_path = out / "last.pt"
    kept = last_path.exists()
    try:
        save_checkpoint(checkpoint, last_path)
        if improved:
            copy_atomic(last_path, out / "best.pt")
        write_metrics(out, state.history)
    except (OSError, RuntimeError) as exc:  # ENOSPC, or torch's "PytorchStreamWriter failed writing file"
        reason = getattr(exc, "strerror", None) or first_line(exc)
        raise TrainingError(
            f"cannot write the epoch {state.epoch} checkpoint to {out} ({reason}); "
            + (f"the last good checkpoint {last_path} (epoch {state.epoch - 1}) is kept: free space and --resume"
               if kept else "nothing was saved yet: free space and start again")) from None


def _epoch_line(row: dict[str, Any], config: TrainConfig) -> str:
    parts = [f"epoch {row['epoch']}/{config.epochs}", f"train_loss {row['train_loss']:.4f}"]
    for key in ("val_kl", "val_loss", "test_acc"):
        if key in row:
            value = row[key]
            parts.append(f"{key} {value * 100:.2f}%" if key.endswith("acc") else f"{key} {value:.4f}")
    parts.append(f"{row['images_per_s']:.0f} img/s")
    return "  ".join(parts)
