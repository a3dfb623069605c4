"""Typed, frozen, validated configuration, one home for every stage's settings.

Configs are built once (by the CLI or by library callers), validated in ``__post_init__``, and
serialised with :func:`to_dict` into checkpoints and manifests so every later stage knows how its
input was made. Only the CLI sees flags. Standard library only: the bench and the device side import
it without torch.

Modules: :mod:`.vocabulary` (the names every choice comes from), :mod:`.checks` (the shared value
checks), :mod:`.training` (``QuantConfig``, ``TrainConfig``), :mod:`.contract` (``InputContract``),
:mod:`.export` (``ExportConfig`` and the per-target rules), :mod:`.bench` (``BenchConfig``,
``RemoteOptions``), :mod:`.serial` (``to_dict``, ``from_dict``, ``replace``).
"""

from __future__ import annotations

from .bench import BenchConfig, RemoteOptions
from .checks import check_fraction
from .contract import IMAGENET_MEAN, IMAGENET_STD, InputContract
from .export import TARGET_RULES, ExportConfig, Target, target_rules
from .serial import from_dict, replace, to_dict
from .training import QuantConfig, TrainConfig
from .vocabulary import (
    ACT_SIGNS,
    BACKWARDS,
    GRANULARITIES,
    GRAPH_KEYS,
    MAX_OPSET,
    METHODS,
    MIN_OPSET,
    OPTIMIZERS,
    PRECISIONS,
    QUANTIZERS,
    SCHEDULES,
    TARGETS,
)

__all__ = [
    "ACT_SIGNS", "BACKWARDS", "GRANULARITIES", "GRAPH_KEYS", "IMAGENET_MEAN", "IMAGENET_STD", "MAX_OPSET", "METHODS",
    "MIN_OPSET", "OPTIMIZERS", "PRECISIONS", "QUANTIZERS", "SCHEDULES", "TARGETS", "TARGET_RULES", "BenchConfig",
    "ExportConfig", "InputContract", "QuantConfig", "RemoteOptions", "Target", "TrainConfig", "check_fraction",
    "from_dict", "replace", "target_rules", "to_dict",
]
