"""A model source, its weights and its input contract, resolved into a float model and its checkpoint block.

:func:`resolve_model` is what ``train`` calls for the model a user brings (``--model`` with ``--teacher
WEIGHTS``); :func:`rebuild_model` is what every later stage calls to build the same network from a
checkpoint's ``model`` block. The block records the source string, the class count, the input contract and,
for a ``file:`` builder, the file's hash.

Precedence for each part of the contract: the flag, else what the weights say (the classifier's rows give
the class count), else the data (registered models: the dataset's channels, size and statistics), else the
source's defaults (torchvision: 3x224x224, ImageNet's mean and std).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import IMAGENET_MEAN, IMAGENET_STD, InputContract
from ..errors import CheckpointError, ConfigError, first_line
from .sources import (
    AUX_PREFIXES,
    Built,
    ModelSource,
    adapt_input_channels,
    build,
    builder_file_sha256,
    parse_model_source,
)
from .weights import classes_in_weights, extract_state_dict, load_into, read_weights_file


@dataclass(frozen=True)
class ContractRequest:
    """What the user said about the input (each None: not said)."""

    num_classes: int | None = None
    in_channels: int | None = None
    size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(f"--num-classes must be >= 2, got {self.num_classes}")
        if self.in_channels is not None and not 1 <= self.in_channels <= 64:
            raise ConfigError(f"--in-channels must be 1 to 64, got {self.in_channels}")

    @property
    def given(self) -> bool:
        """Whether any part of the input contract was given."""
        return any(v is not None for v in (self.in_channels, self.size, self.mean, self.std))


@dataclass
class ResolvedModel:
    """A float model ready to be a teacher, and what its checkpoints record."""

    model: nn.Module
    meta: dict[str, Any]
    contract: InputContract
    notes: list[str] = field(default_factory=list)


def model_meta_block(source: ModelSource, num_classes: int, contract: InputContract) -> dict[str, Any]:
    """The ``model`` block of a checkpoint (and the export manifest)."""
    meta: dict[str, Any] = {"name": source.display_name, "source": source.spec, "num_classes": num_classes,
                            "in_channels": contract.channels, "input_size": contract.height,
                            "input_shape": list(contract.shape), "mean": list(contract.mean),
                            "std": list(contract.std)}
    digest = builder_file_sha256(source)
    if digest:
        meta["builder_sha256"] = digest
    return meta


def contract_of(meta: dict[str, Any], data_meta: dict[str, Any] | None = None) -> InputContract:
    """The input contract a checkpoint's ``model`` block records (older checkpoints: from their data block)."""
    data_meta = data_meta or {}
    shape = meta.get("input_shape") or [meta["in_channels"], meta["input_size"], meta["input_size"]]
    mean = meta.get("mean") or data_meta.get("mean")
    std = meta.get("std") or data_meta.get("std")
    channels = int(shape[0])
    if not mean or not std:  # a float checkpoint of an old version that recorded no statistics
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,) * channels, (0.5,) * channels)
    return InputContract(channels, int(shape[1]), int(shape[2]), tuple(mean), tuple(std))


def _check_forward(model: nn.Module, contract: InputContract, num_classes: int | None, name: str) -> int:
    """Run one batch of zeros at the contract's shape; return the logits' width (one line on failure)."""
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *contract.shape))
    except Exception as exc:  # a shape error can be RuntimeError, ValueError, IndexError, AssertionError...
        first = first_line(exc)
        raise ConfigError(f"model {name} rejects input {contract.channels}x{contract.size_text} ({first}); pass "
                          "--input-size (and --in-channels) that the model takes") from None
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model {name} returns {got} for a batch of 2 images; a classifier returns logits of "
                          "shape (batch, classes)")
    width = int(out.shape[1])
    if num_classes is not None and width != num_classes:
        raise ConfigError(f"model {name} returns {width} logits but {num_classes} classes are needed; build it with "
                          "that many (its builder's num_classes, or ?num_classes= in the source)")
    return width


def resolve_model(source_text: str, request: ContractRequest = ContractRequest(), *, weights: str | Path | None = None,
                  data_meta: dict[str, Any] | None = None, log: Callable[[str], None] = print) -> ResolvedModel:
    """Build a user's float model, load their weights, and settle its input contract.

    Args:
        source_text: a model source (registered name, ``torchvision:NAME``, ``file:``, ``module:``).
        request: the contract flags the user gave.
        weights: a ``state_dict`` file (see ``models.weights``), or None for random weights.
        data_meta: the training data's block (``in_channels``, ``input_size``, ``mean``, ``std``,
            ``num_classes``), used for registered models' defaults and the class count; None when unknown.
        log: where notes go.

    Returns:
        The model (eval mode), its checkpoint block and contract, and notes on what was inferred.

    Raises:
        ConfigError: a bad source, a builder that fails, or a model that rejects the contract's input.
        CheckpointError: weights that cannot be read or do not fit.
    """
    source = parse_model_source(source_text)
    data_meta = data_meta or {}
    notes: list[str] = []
    state_dict = extract_state_dict(read_weights_file(weights), weights) if weights is not None else None
    registered = source.kind == "registered"

    channels = request.in_channels or (int(data_meta["in_channels"]) if registered and data_meta else None)
    size = request.size
    if size is None and registered and data_meta.get("input_size"):
        size = (int(data_meta["input_size"]), int(data_meta["input_size"]))
    classes = request.num_classes
    if classes is None and registered:
        classes = data_meta.get("num_classes")
    image_size = size[0] if size is not None and size[0] == size[1] else None
    built = build(source, num_classes=classes, in_channels=channels, image_size=image_size)
    if classes is None and state_dict is not None:
        classifier = classifier_name(built.model)
        inferred = classes_in_weights(state_dict, classifier)
        current = _classes_of(built.model, classifier)
        if inferred is not None and inferred != current:
            built = build(source, num_classes=inferred, in_channels=channels, image_size=image_size)
        classes = inferred
        if inferred is not None:
            notes.append(f"{inferred} classes, from the weights' classifier")
    if state_dict is not None:
        ignore = AUX_PREFIXES if source.kind == "torchvision" else ()
        dropped = load_into(built.model, state_dict, what=f"{Path(weights).name} for {source.display_name}",  # type: ignore[arg-type]
                            ignore_prefixes=ignore)
        if dropped:
            notes.append(f"ignored {len(dropped)} weights of the training-only auxiliary heads")
    elif not registered:
        notes.append("random weights (no --teacher weights): for testing the pipeline only")
    contract = _settle_contract(built, request, data_meta, channels, size)
    if contract.channels != built.native_channels:
        adapted = adapt_input_channels(built.model, contract.channels)
        notes.append(f"first conv {adapted} adapted from {built.native_channels} to {contract.channels} input channels")
    width = _check_forward(built.model, contract, classes, source.display_name)
    meta = model_meta_block(built.source, width, contract)
    for note in notes:
        log(f"model {source.display_name}: {note}")
    return ResolvedModel(built.model.eval(), meta, contract, notes)


def classifier_name(model: nn.Module) -> str | None:
    """The classifier: the last Linear the forward calls (else the last Conv2d: SqueezeNet's head)."""
    from ..graph import TraceFailure, called_modules, trace

    try:
        gm = trace(model)
    except TraceFailure:
        return None
    called = called_modules(gm, (nn.Linear,)) or called_modules(gm, (nn.Conv2d,))
    return called[-1] if called else None


def _classes_of(model: nn.Module, name: str | None) -> int | None:
    if name is None:
        return None
    weight = getattr(model.get_submodule(name), "weight", None)
    return int(weight.shape[0]) if isinstance(weight, torch.Tensor) else None


def _settle_contract(built: Built, request: ContractRequest, data_meta: dict[str, Any], channels: int | None,
                     size: tuple[int, int] | None) -> InputContract:
    registered = built.source.kind == "registered"
    channels = channels or built.native_channels
    if size is None:
        side = built.default_size or 224
        size = (side, side)
    mean, std = request.mean, request.std
    if registered and data_meta.get("mean") and int(data_meta.get("in_channels", 0)) == channels:
        mean = mean or tuple(data_meta["mean"])
        std = std or tuple(data_meta["std"])
    default_mean = built.default_mean or IMAGENET_MEAN
    default_std = built.default_std or IMAGENET_STD
    if mean is None:
        mean = default_mean if channels == len(default_mean) else (sum(default_mean) / len(default_mean),) * channels
    if std is None:
        std = default_std if channels == len(default_std) else (sum(default_std) / len(default_std),) * channels
    return InputContract(channels, size[0], size[1], tuple(mean), tuple(std))


def rebuild_model(meta: dict[str, Any]) -> nn.Module:
    """The float network a checkpoint's ``model`` block describes (random weights; load the state_dict after).

    Raises:
        CheckpointError: a builder that cannot be found or run any more (with the source it names).
    """
    source_text = str(meta.get("source") or meta["name"])
    try:
        source = parse_model_source(source_text)
        shape = meta.get("input_shape") or [meta["in_channels"], meta["input_size"], meta["input_size"]]
        built = build(source, num_classes=int(meta["num_classes"]), in_channels=int(meta["in_channels"]),
                      image_size=int(shape[1]) if shape[1] == shape[2] else None)
        if int(meta["in_channels"]) != built.native_channels:
            adapt_input_channels(built.model, int(meta["in_channels"]))
    except ConfigError as exc:
        raise CheckpointError(f"cannot rebuild the checkpoint's model {source_text}: {exc}") from None
    digest = meta.get("builder_sha256")
    if digest and builder_file_sha256(source) not in (None, digest):
        import warnings

        warnings.warn(f"the model file of {source_text} changed since the checkpoint was written (sha256 differs); "
                      "the weights are loaded into the network it builds now", UserWarning, stacklevel=2)
    return built.model
