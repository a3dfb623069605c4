"""What ``bench`` measures and how long (``BenchConfig``), and how it runs on a device (``RemoteOptions``).

Units are explicit in the names: warm-up and timed work are counted in *iterations* (one
``infer`` call on one batch), a duration in *seconds*.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..errors import ConfigError
from .vocabulary import GRAPH_KEYS


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how long.

    Args:
        batches: batch sizes; each is measured separately and speed-ups compare equal batches.
        threads: intra-op threads for ONNX Runtime and PyTorch; None means one per logical CPU.
        warmup_iters: untimed iterations per graph and batch before timing starts.
        iters: timed iterations per graph and batch (exclusive with ``duration_s``).
        duration_s: seconds of timed work per batch size, shared by all graphs; rounds go on until
            it has passed (at least one round).
        round_iters: timed iterations a graph runs before the next graph takes its turn; rounds
            alternate between graphs (and rotate who goes first) so slow drift of the machine
            (heat, other load) falls on every graph alike.
        seed: seed of the random inputs and of the bootstrap.
        graphs: which graphs to run (``fp32``, ``int8``, ``eager``); None runs every one at hand.
        data: a dataset spec for real inputs and top-1 accuracy (see ``sqakd_edge.data``).
        data_limit: evaluate accuracy on at most this many images (None: the whole test split).

    Raises:
        ConfigError: for zero or negative counts, both or neither of iters/duration, unknown graphs.
    """

    batches: tuple[int, ...] = (1,)
    threads: int | None = None
    warmup_iters: int = 10
    iters: int | None = 100
    duration_s: float | None = None
    round_iters: int = 10
    seed: int = 0
    graphs: tuple[str, ...] | None = None
    data: str | None = None
    data_limit: int | None = None

    def __post_init__(self) -> None:
        batches = tuple(self.batches)
        if not batches or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batches):
            raise ConfigError(f"batch sizes must be positive integers, got {list(batches)}")
        object.__setattr__(self, "batches", batches)
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if self.warmup_iters < 0:
            raise ConfigError(f"--warmup is a number of untimed iterations and must be >= 0, got {self.warmup_iters}")
        if self.iters is not None and self.duration_s is not None:
            raise ConfigError("give either --iters or --duration, not both")
        if self.iters is None and self.duration_s is None:
            raise ConfigError("give --iters N (timed iterations) or --duration S (seconds)")
        if self.iters is not None and self.iters < 1:
            raise ConfigError(f"--iters must be a positive number of timed iterations, got {self.iters}")
        if self.duration_s is not None and not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ConfigError(f"--duration must be a positive, finite number of seconds, got {self.duration_s}")
        if self.round_iters < 1:
            raise ConfigError(f"round_iters must be at least 1, got {self.round_iters}")
        if self.data_limit is not None and self.data_limit < 1:
            raise ConfigError(f"--data-limit must be at least 1 image, got {self.data_limit}")
        if self.graphs is not None:
            graphs = tuple(self.graphs)
            unknown = [g for g in graphs if g not in GRAPH_KEYS]
            if unknown or not graphs:
                raise ConfigError(f"unknown graph(s) {unknown or '(none)'}; choose from: {', '.join(GRAPH_KEYS)}")
            object.__setattr__(self, "graphs", graphs)

    @property
    def resolved_threads(self) -> int:
        """The thread count actually used: ``threads``, or the number of logical CPUs."""
        return self.threads if self.threads is not None else (os.cpu_count() or 1)


@dataclass(frozen=True)
class RemoteOptions:
    """How to run this benchmark on the device (the device itself, and how to reach it, is the target).

    Args:
        setup: set the profile's benchmark power mode and ``jetson_clocks`` first, restore them after.
        tegrastats: sample board power with ``tegrastats`` while timing.
        workspace_mib: TensorRT builder workspace limit.
        run_timeout_s: give up on the device program after this many seconds (None: never).
    """

    setup: bool = False
    tegrastats: bool = False
    workspace_mib: int = 256
    run_timeout_s: float | None = None
