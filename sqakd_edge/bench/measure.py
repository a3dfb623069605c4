"""The timing loop: warm-up, then alternating rounds, the same input for every runner.

Why rounds: a laptop heats up, a neighbour starts a build, the CPU governor changes its mind.
Timing FP32 for a minute and then INT8 for a minute would put that drift into the ratio. Here the
runners take turns — ``round_iters`` iterations each — and the order rotates every round, so
drift lands on every runner alike and cancels in the ratio of medians.

Each timed iteration is one ``infer`` call measured with ``time.perf_counter_ns`` (monotonic,
nanoseconds). CPU runtimes return only when the outputs are computed, so no extra synchronisation
is needed; a GPU runner must synchronise inside ``infer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from .runners import Runner


def measure(
    runners: Sequence[Runner],
    batch: np.ndarray,
    *,
    warmup_iters: int,
    iters: int | None = None,
    duration_s: float | None = None,
    round_iters: int = 10,
    tick: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """Time every runner on ``batch`` in alternating rounds.

    Args:
        runners: active runners with distinct names.
        batch: the input, shared by all runners.
        warmup_iters: untimed iterations per runner before timing (also taken in turns).
        iters: timed iterations per runner; exclusive with ``duration_s``.
        duration_s: keep timing whole rounds until this many seconds have passed (at least one).
        round_iters: iterations per runner per round.
        tick: called after every iteration (warm-up included), e.g. to move a progress bar.

    Returns:
        Per runner name, the latency of each timed iteration in milliseconds (float64), in the
        order they ran. Every runner gets the same number of iterations.
    """
    if (iters is None) == (duration_s is None):
        raise ValueError("exactly one of iters and duration_s")  # BenchConfig validated the user's input
    step = tick or (lambda: None)
    for _ in range(warmup_iters):
        for runner in runners:
            runner.infer(batch)
            step()

    samples: dict[str, list[float]] = {runner.name: [] for runner in runners}
    clock = time.perf_counter_ns
    started = clock()
    rounds = 0
    while True:
        done = len(samples[runners[0].name])
        if iters is not None and done >= iters:
            break
        if duration_s is not None and rounds > 0 and (clock() - started) / 1e9 >= duration_s:
            break
        count = round_iters if iters is None else min(round_iters, iters - done)
        shift = rounds % len(runners)
        for runner in [*runners[shift:], *runners[:shift]]:
            times = samples[runner.name]
            for _ in range(count):
                t0 = clock()
                runner.infer(batch)
                times.append((clock() - t0) / 1e6)
                step()
        rounds += 1
    return {name: np.asarray(times, dtype=np.float64) for name, times in samples.items()}
