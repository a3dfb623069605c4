"""What ``sqakd-edge train`` does: open the data, build teacher or student, and call :func:`fit`.

The teacher comes from one of three places:

* a sqakd-edge float checkpoint (``train --fp``): it fixes the architecture and the input contract;
* the user's own weights (``--model SOURCE --teacher weights.pt``): a ``state_dict`` of a registered,
  torchvision or home-made model (``models.resolve``), loaded safely;
* nothing (``--model SOURCE --random-teacher``): random weights, to test the pipeline only (it says so).

For a model the user brings, images are converted to its input contract (``data.contract``): the flags
``--input-size``, ``--in-channels``, ``--num-classes``, ``--mean``, ``--std``, else the source's defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import build_model_from_checkpoint, check_checkpoint, file_sha256, is_checkpoint
from ..config import InputContract, QuantConfig, TrainConfig
from ..errors import ConfigError, DataError, first_line
from ..models.resolve import ContractRequest, ResolvedModel, contract_of, resolve_model
from .distributed import DistInfo
from .loop import FitResult, RunData, fit, split_held_out


def open_run_data(spec: str, config: TrainConfig, contract: InputContract | None = None, *,
                  skip_corrupt: bool = False) -> RunData:
    """Training (augmented), held-out (plain) and, where the dataset has one, test splits of ``spec``.

    Args:
        spec: the dataset spec.
        config: the run's settings (``augment``, ``val_fraction``, ``seed``).
        contract: the model's input contract (None: the dataset's own channels, size and statistics).
        skip_corrupt: drop unreadable images with one warning instead of stopping at the first.
    """
    from ..data import open_dataset

    train = open_dataset(spec, "train", augment=config.augment, contract=contract, skip_corrupt=skip_corrupt)
    plain = open_dataset(spec, "train", augment=False, contract=contract, skip_corrupt=skip_corrupt)
    test, test_missing = None, None
    if train.labelled:
        try:
            test = open_dataset(spec, "test", augment=False, contract=contract, skip_corrupt=skip_corrupt).dataset
        except DataError as exc:  # e.g. a folder of images, or a CIFAR root without test_batch: said in the log
            test, test_missing = None, first_line(exc)
    train_part, held_out = split_held_out(train.dataset, plain.dataset, config.val_fraction, config.seed)
    meta = {"spec": spec, "name": train.name, "mean": list(train.mean), "std": list(train.std),
            "in_channels": train.in_channels, "input_size": train.input_size, "num_classes": train.num_classes,
            "labelled": train.labelled}
    if test_missing:
        meta["test_missing"] = test_missing
    return RunData(train_part, held_out, test, train.labelled, meta)


def _registered(model: str) -> bool:
    from ..models.sources import parse_model_source

    return parse_model_source(model).kind == "registered"


def _data_and_model(data_spec: str, model: str, config: TrainConfig, request: ContractRequest, *,
                    weights: str | Path | None, skip_corrupt: bool, log: Callable[[str], None],
                    native: RunData | None = None) -> tuple[RunData, ResolvedModel]:
    """The data and the float model, each fitted to the other.

    A registered model takes the dataset's channels, size and statistics unless flags say otherwise; any
    other model fixes its input contract, and the images are converted to it.
    """
    registered = _registered(model)
    if registered and native is None:
        native = open_run_data(data_spec, config, skip_corrupt=skip_corrupt)
    resolved = resolve_model(model, request, weights=weights, data_meta=native.meta if registered and native else None,
                             log=log)
    if registered and not request.given:
        assert native is not None
        return native, resolved
    log(f"input contract: {resolved.contract.channels}x{resolved.contract.size_text}, mean "
        f"{list(resolved.contract.mean)}, std {list(resolved.contract.std)} (images are converted to it)")
    return open_run_data(data_spec, config, resolved.contract, skip_corrupt=skip_corrupt), resolved


def train_teacher(data_spec: str, out_dir: str | Path, config: TrainConfig, *, model: str = "resnet20",
                  num_classes: int | None = None, request: ContractRequest | None = None, skip_corrupt: bool = False,
                  resume: bool = False, force: bool = False, progress: bool = True, dist_info: DistInfo | None = None,
                  log: Callable[[str], None] = print, options: dict[str, Any] | None = None) -> FitResult:
    """Train a float teacher with labels (any model source; torchvision's and yours from random weights).

    Raises:
        DataError: unlabeled data (a teacher needs labels) or a class-count mismatch.
        ConfigError: a bad model source or input contract.
    """
    from ..models.sources import parse_model_source

    parse_model_source(model)  # unknown names fail before any data is read
    request = request or ContractRequest(num_classes=num_classes)
    native = open_run_data(data_spec, config, skip_corrupt=skip_corrupt)
    _check_labelled(native, data_spec, request)
    request = ContractRequest(native.meta["num_classes"], request.in_channels, request.size, request.mean, request.std)
    torch.manual_seed(config.seed)  # the initial weights follow --seed (and are the same on every process)
    data, resolved = _data_and_model(data_spec, model, config, request, weights=None, skip_corrupt=skip_corrupt,
                                     log=log, native=native if _registered(model) else None)
    return fit(resolved.model, data, config, out_dir, model_meta=resolved.meta, resume=resume, force=force,
               progress=progress, dist_info=dist_info, log=log, options=options)


def _check_labelled(data: RunData, spec: str, request: ContractRequest) -> None:
    if not data.labelled:
        raise DataError(f"{spec} has no labels; a float teacher trains on labelled data (class subfolders)")
    classes = data.meta["num_classes"]
    if request.num_classes is not None and request.num_classes != classes:
        raise DataError(f"--num-classes {request.num_classes} does not match the data's {classes} classes")


@dataclass(frozen=True)
class TeacherSpec:
    """Where the teacher comes from.

    Attributes:
        path: a sqakd-edge float checkpoint, or (with ``model``) a ``state_dict`` file; None with ``random``.
        model: the teacher's model source, when ``path`` is not a sqakd-edge checkpoint.
        random: random weights (testing only).
    """

    path: str | Path | None = None
    model: str | None = None
    random: bool = False

    def __post_init__(self) -> None:
        if self.random and self.path is not None:
            raise ConfigError("pass either --teacher WEIGHTS or --random-teacher, not both")
        if self.random and self.model is None:
            raise ConfigError("--random-teacher needs --model SOURCE (the architecture to build)")
        if not self.random and self.path is None:
            raise ConfigError("a student needs a teacher: --teacher CKPT (sqakd-edge checkpoint, or your weights "
                              "with --model SOURCE), or --random-teacher with --model for a test run")


def train_student(data_spec: str, out_dir: str | Path, config: TrainConfig, quant: QuantConfig, *,
                  teacher_path: str | Path | None = None, model: str | None = None, random_teacher: bool = False,
                  request: ContractRequest | None = None, skip_corrupt: bool = False, resume: bool = False,
                  force: bool = False, progress: bool = True, dist_info: DistInfo | None = None,
                  log: Callable[[str], None] = print, options: dict[str, Any] | None = None) -> FitResult:
    """Train a fake-quant student that starts from the teacher's weights (SQAKD: no labels).

    Args:
        data_spec: the training images (labelled or not).
        out_dir: the run folder.
        config: training settings.
        quant: quantization settings.
        teacher_path: a sqakd-edge float checkpoint, or a ``state_dict`` file of ``model``.
        model: the teacher's model source (needed for a ``state_dict`` or ``random_teacher``).
        random_teacher: build ``model`` with random weights (to test the pipeline only).
        request: input-contract flags (for a model the user brings).
        skip_corrupt: drop unreadable images.
        resume: continue ``out_dir/last.pt``.
        force: replace a run in ``out_dir``.
        progress: progress bars.
        dist_info: the torchrun process group.
        log: one-line messages.
        options: the resolved CLI options, recorded in ``summary.json``.

    Raises:
        ConfigError: a student architecture other than the teacher's, contract flags that contradict a sqakd-edge
            teacher, a bad model source.
        DataError: data whose classes or channels differ from the teacher's.
        CheckpointError: a teacher file that cannot be read or does not fit.
    """
    from ..quant import plan_quantization, prepare_qat
    from ..safeload import read_torch_file

    spec = TeacherSpec(teacher_path, model, random_teacher)
    request = request or ContractRequest()
    loaded = read_torch_file(teacher_path) if teacher_path is not None else None
    teacher_info: dict[str, Any]
    if loaded is not None and is_checkpoint(loaded):
        teacher_ckpt = check_checkpoint(loaded, Path(teacher_path), kind="fp")  # type: ignore[arg-type]
        t_meta = dict(teacher_ckpt["model"])
        if model is not None and model != t_meta["name"] and model != t_meta.get("source"):
            raise ConfigError(f"the student must have the teacher's architecture ({t_meta['name']}), got --model "
                              f"{model}; SQAKD distils into the same network")
        if request.given or request.num_classes is not None:
            raise ConfigError(f"the teacher checkpoint {teacher_path} fixes the input and the classes; drop "
                              "--input-size/--in-channels/--num-classes/--mean/--std")
        contract = contract_of(t_meta, teacher_ckpt.get("data")) if t_meta.get("input_shape") else None
        data = open_run_data(data_spec, config, contract, skip_corrupt=skip_corrupt)
        _check_data_fits(data.meta, t_meta, data_spec, str(teacher_path), labelled_needed=config.uses_labels)
        teacher = build_model_from_checkpoint(teacher_ckpt)
        teacher_info = {"path": str(Path(teacher_path).resolve()), "sha256": file_sha256(teacher_path),  # type: ignore[arg-type]
                        "kind": "sqakd-edge checkpoint", "best": teacher_ckpt.get("best", {})}
    else:
        if spec.model is None:
            raise ConfigError(f"{teacher_path} is not a sqakd-edge checkpoint; for your own model's weights pass "
                              "--model SOURCE too (a registered name, torchvision:NAME, file:PATH.py:FUNCTION or "
                              "module:package.module:FUNCTION)")
        data, resolved = _data_and_model(data_spec, spec.model, config, request, weights=teacher_path,
                                         skip_corrupt=skip_corrupt, log=log)
        t_meta = resolved.meta
        _check_data_fits(data.meta, t_meta, data_spec, str(teacher_path or spec.model),
                         labelled_needed=config.uses_labels)
        teacher = resolved.model
        if teacher_path is None:
            log(f"the teacher {spec.model} has RANDOM weights (--random-teacher): this run tests the pipeline; its "
                "accuracy means nothing")
            teacher_info = {"kind": "random", "model": spec.model}
        else:
            teacher_info = {"path": str(Path(teacher_path).resolve()), "sha256": file_sha256(teacher_path),
                            "kind": "state_dict"}
    plan = plan_quantization(teacher, quant)
    student = prepare_qat(teacher, quant)
    return fit(student, data, config, out_dir, model_meta=dict(t_meta), teacher=teacher, teacher_meta=teacher_info,
               quant=quant, quant_plan=plan.describe(), resume=resume, force=force, progress=progress,
               dist_info=dist_info, log=log, options=options)


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
