"""Resuming a run: the checkpoint must be the same run, and the loop continues where it stopped.

A resume with other settings, other data or another teacher (same architecture, other weights) would
continue silently into a run that matches neither; it is refused with the difference named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_checkpoint
from ..config import TrainConfig, from_dict, to_dict
from ..errors import ConfigError
from .distributed import DistInfo


@dataclass
class LoopState:
    """Where the loop stands: the next epoch, the global step, the history and the best epoch so far."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)


def check_resume_matches(ckpt: dict[str, Any], expected: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint of another run: kind, model, quantizer, data, teacher or training settings."""
    for key in ("kind", "model", "quant"):
        if ckpt.get(key) != expected.get(key):
            raise ConfigError(f"--resume: {path} was a different run ({key} differs: {ckpt.get(key)} vs "
                              f"{expected.get(key)}); use the same settings, or --force to start over")
    saved_data, data = ckpt.get("data") or {}, expected.get("data") or {}
    if saved_data.get("spec") is not None and saved_data.get("spec") != data.get("spec"):
        raise ConfigError(f"--resume: {path} trained on --data {saved_data.get('spec')}, not {data.get('spec')}; "
                          "resume with the same data, or --force to start over")
    saved_teacher, teacher = ckpt.get("teacher") or {}, expected.get("teacher") or {}
    if saved_teacher.get("sha256") != teacher.get("sha256"):
        raise ConfigError(f"--resume: {path} was distilled from another teacher (sha256 "
                          f"{str(saved_teacher.get('sha256'))[:12]}... vs {str(teacher.get('sha256'))[:12]}...); "
                          "resume with the same teacher, or --force to start over")
    # through TrainConfig, so a setting the older checkpoint lacks counts as its default
    saved_train = to_dict(from_dict(TrainConfig, dict(ckpt.get("train", {}))))
    wanted = dict(expected["train"])
    saved_train.pop("epochs", None)
    wanted.pop("epochs", None)  # more epochs on resume is allowed: the schedule stretches
    if saved_train != wanted:
        diff = sorted(k for k in wanted if saved_train.get(k) != wanted[k])
        raise ConfigError(f"--resume: {path} used different training settings ({', '.join(diff)}); "
                          "use the same settings, or --force to start over")


def resume_run(path: Path, header: dict[str, Any], student: nn.Module, optimizer: torch.optim.Optimizer,
               config: TrainConfig, info: DistInfo) -> LoopState:
    """Load ``path`` into ``student`` and ``optimizer`` after checking it is this run; restore the RNG."""
    ckpt = load_checkpoint(path)
    check_resume_matches(ckpt, header, path)
    student.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"])
    state = LoopState(int(ckpt["epoch"]), int(ckpt["step"]), list(ckpt.get("history", [])),
                      dict(ckpt.get("best", {})))
    per_rank = ckpt["rng"].get("torch_per_rank") or []
    if len(per_rank) == info.world_size:
        torch.set_rng_state(per_rank[info.rank])  # each process continues its own augmentation stream
    else:  # another world size: the data split differs anyway; keep the streams distinct
        torch.set_rng_state(ckpt["rng"]["torch"])
        if info.rank:
            torch.manual_seed(config.seed + info.rank + 7919 * state.epoch)
    return state
