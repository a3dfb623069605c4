"""What ``sqakd-edge train`` does: open the data, build teacher or student, and call :func:`fit`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import QuantConfig, TrainConfig
from ..errors import ConfigError, DataError
from .checkpoint import build_model_from_checkpoint, file_sha256, load_checkpoint, model_meta
from .distributed import DistInfo
from .loop import FitResult, RunData, fit, split_held_out


def open_run_data(spec: str, config: TrainConfig) -> RunData:
    """Training (augmented), held-out (plain) and, where the dataset has one, test splits of ``spec``."""
    from ..data import open_dataset

    train = open_dataset(spec, "train", augment=config.augment)
    plain = open_dataset(spec, "train", augment=False)
    try:
        test = open_dataset(spec, "test", augment=False).dataset if train.labelled else None
    except DataError:
        test = None  # e.g. a folder of images with no test split
    train_part, held_out = split_held_out(train.dataset, plain.dataset, config.val_fraction, config.seed)
    meta = {"spec": spec, "name": train.name, "mean": list(train.mean), "std": list(train.std),
            "in_channels": train.in_channels, "input_size": train.input_size, "num_classes": train.num_classes,
            "labelled": train.labelled}
    return RunData(train_part, held_out, test, train.labelled, meta)


def train_teacher(data_spec: str, out_dir: str | Path, config: TrainConfig, *, model: str = "resnet20",
                  num_classes: int | None = None, resume: bool = False, force: bool = False, progress: bool = True,
                  dist_info: DistInfo | None = None, log: Callable[[str], None] = print) -> FitResult:
    """Train a float teacher with labels.

    Raises:
        DataError: unlabeled data (a teacher needs labels) or a class-count mismatch.
    """
    from ..models import create_model, model_spec

    model_spec(model)  # unknown names fail before any data is read
    data = open_run_data(data_spec, config)
    if not data.labelled:
        raise DataError(f"{data_spec} has no labels; a float teacher trains on labelled data (class subfolders)")
    classes = data.meta["num_classes"]
    if num_classes is not None and num_classes != classes:
        raise DataError(f"--num-classes {num_classes} does not match the data's {classes} classes")
    torch.manual_seed(config.seed)  # the initial weights follow --seed (and are the same on every process)
    net = create_model(model, num_classes=classes, in_channels=data.meta["in_channels"])
    meta = model_meta(model, classes, data.meta["in_channels"], data.meta["input_size"])
    return fit(net, data, config, out_dir, model_meta=meta, resume=resume, force=force, progress=progress,
               dist_info=dist_info, log=log)


def train_student(data_spec: str, out_dir: str | Path, config: TrainConfig, quant: QuantConfig, *,
                  teacher_path: str | Path, model: str | None = None, resume: bool = False, force: bool = False,
                  progress: bool = True, dist_info: DistInfo | None = None,
                  log: Callable[[str], None] = print) -> FitResult:
    """Train a fake-quant student that starts from the teacher's weights (SQAKD: no labels).

    Raises:
        ConfigError: a student architecture other than the teacher's.
        DataError: data whose classes or channels differ from the teacher's.
        CheckpointError: a teacher file that is not a float sqakd-edge checkpoint.
    """
    from ..quant import prepare_qat

    teacher_ckpt = load_checkpoint(teacher_path, kind="fp")
    t_meta = teacher_ckpt["model"]
    if model is not None and model != t_meta["name"]:
        raise ConfigError(f"the student must have the teacher's architecture ({t_meta['name']}), got --model {model}; "
                          "SQAKD distils into the same network")
    data = open_run_data(data_spec, config)
    _check_data_fits(data.meta, t_meta, data_spec, str(teacher_path), labelled_needed=config.uses_labels)
    teacher = build_model_from_checkpoint(teacher_ckpt)
    student = prepare_qat(teacher, quant)
    teacher_info: dict[str, Any] = {"path": str(Path(teacher_path).resolve()), "sha256": file_sha256(teacher_path),
                                    "best": teacher_ckpt.get("best", {})}
    return fit(student, data, config, out_dir, model_meta=dict(t_meta), teacher=teacher, teacher_meta=teacher_info,
               quant=quant, resume=resume, force=force, progress=progress, dist_info=dist_info, log=log)


def _check_data_fits(data_meta: dict[str, Any], model: dict[str, Any], spec: str, teacher: str, *,
                     labelled_needed: bool) -> None:
    if data_meta["in_channels"] != model["in_channels"]:
        raise DataError(f"{spec} has {data_meta['in_channels']}-channel images but the teacher {teacher} takes "
                        f"{model['in_channels']}-channel input; use data like the teacher's")
    classes = data_meta["num_classes"]
    if classes is not None and classes != model["num_classes"]:
        raise DataError(f"{spec} has {classes} classes but the teacher {teacher} predicts {model['num_classes']}; "
                        "use the teacher's dataset (or unlabeled images)")
    if labelled_needed and not data_meta["labelled"]:
        raise DataError(f"{spec} has no labels, which this method needs; use --method sqakd")
