"""Latency statistics and speed-ups that say how far they can be trusted.

A configuration's latency is summarised by robust order statistics (median, p90, p99) beside the
mean and spread. A speed-up is the ratio of two medians, with a percentile-bootstrap 95%
confidence interval: both samples are resampled independently, because the two precisions ran
in alternating rounds, not as matched pairs.

When is a ratio not trustworthy? We call it untrustworthy when
  * either sample has fewer than :data:`MIN_SAMPLES` timed iterations (the bootstrap of a median
    is unreliable below that), or
  * the 95% interval is wider than :data:`MAX_RELATIVE_CI_WIDTH` of the ratio itself
    (``(hi - lo) / ratio``), i.e. the machine was too noisy to pin the ratio down to about ±10%.
A configuration is *noisy* when its interquartile range exceeds :data:`MAX_RELATIVE_IQR` of its
median; that is reported too, but on its own it does not make the median wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

MIN_SAMPLES = 20
MAX_RELATIVE_CI_WIDTH = 0.20
MAX_RELATIVE_IQR = 0.25
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one configuration's per-iteration latencies (milliseconds per batch).

    Args:
        n: timed iterations.
        median_ms: median latency.
        p90_ms: 90th percentile (linear interpolation, numpy's default).
        p99_ms: 99th percentile.
        mean_ms: mean latency.
        std_ms: sample standard deviation (ddof=1; 0 for a single sample).
        min_ms: fastest iteration.
        max_ms: slowest iteration.
        iqr_ms: interquartile range (p75 - p25).
        throughput_ips: images per second at the median latency: ``batch * 1000 / median_ms``.
    """

    n: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    iqr_ms: float
    throughput_ips: float

    @property
    def noisy(self) -> bool:
        """Whether the interquartile range exceeds :data:`MAX_RELATIVE_IQR` of the median."""
        return self.iqr_ms > MAX_RELATIVE_IQR * self.median_ms

    def to_dict(self) -> dict[str, float | int]:
        """The fields as a plain dict (JSON-able)."""
        return asdict(self)


@dataclass(frozen=True)
class SpeedUp:
    """How many times faster ``candidate`` ran than ``baseline`` (ratio of median latencies).

    Args:
        ratio: ``median(baseline) / median(candidate)``; above 1 means the candidate is faster.
        ci_low: lower end of the bootstrap confidence interval.
        ci_high: upper end.
        confidence: the interval's level (0.95).
        resamples: bootstrap resamples.
        seed: the bootstrap's random seed.
        trustworthy: False when the samples are too few or the interval too wide (module doc).
        warning: one sentence saying why it is not trustworthy, else None.
    """

    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    seed: int
    trustworthy: bool
    warning: str | None

    def to_dict(self) -> dict[str, object]:
        """The fields as a plain dict (JSON-able)."""
        return asdict(self)


def _as_samples(samples_ms: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(samples_ms, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError(f"{what}: no samples")  # internal invariant: callers time at least once
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"{what}: latencies must be finite and positive")
    return values


def summarize(samples_ms: Sequence[float] | np.ndarray, batch: int) -> LatencyStats:
    """Summarise per-iteration latencies.

    Args:
        samples_ms: latency of each timed iteration, in milliseconds for the whole batch.
        batch: images per iteration (for the throughput).

    Returns:
        The :class:`LatencyStats`.

    Raises:
        ValueError: for an empty sample or non-positive latencies (a programming error).

    Example:
        >>> summarize([1.0, 2.0, 3.0], batch=1).median_ms
        2.0
    """
    x = _as_samples(samples_ms, "summarize")
    median = float(np.median(x))
    p25, p75, p90, p99 = (float(v) for v in np.percentile(x, [25, 75, 90, 99]))
    return LatencyStats(
        n=int(x.size),
        median_ms=median,
        p90_ms=p90,
        p99_ms=p99,
        mean_ms=float(x.mean()),
        std_ms=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        min_ms=float(x.min()),
        max_ms=float(x.max()),
        iqr_ms=p75 - p25,
        throughput_ips=batch * 1000.0 / median,
    )


def _bootstrap_medians(x: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    # Resample in blocks so a long sample (10^5 iterations) never needs a huge index matrix.
    out = np.empty(resamples)
    block = max(1, 2_000_000 // x.size)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        out[start:stop] = np.median(x[idx], axis=1)
    return out


def speedup(
    baseline_ms: Sequence[float] | np.ndarray,
    candidate_ms: Sequence[float] | np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> SpeedUp:
    """The speed-up of ``candidate`` over ``baseline`` as a ratio of medians, with a bootstrap CI.

    Args:
        baseline_ms: per-iteration latencies of the reference (e.g. FP32).
        candidate_ms: per-iteration latencies of the contender (e.g. INT8), same batch size.
        resamples: bootstrap resamples.
        confidence: level of the interval, e.g. 0.95.
        seed: random seed, so the same samples always give the same interval.

    Returns:
        The :class:`SpeedUp`, with ``trustworthy`` and ``warning`` set as in the module doc.

    Raises:
        ValueError: for empty samples, non-positive latencies or a bad confidence level.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    base = _as_samples(baseline_ms, "baseline")
    cand = _as_samples(candidate_ms, "candidate")
    ratio = float(np.median(base) / np.median(cand))
    rng = np.random.default_rng(seed)
    ratios = _bootstrap_medians(base, rng, resamples) / _bootstrap_medians(cand, rng, resamples)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = (float(v) for v in np.percentile(ratios, [tail, 100.0 - tail]))
    warning = None
    if min(base.size, cand.size) < MIN_SAMPLES:
        warning = (
            f"only {min(base.size, cand.size)} timed iterations (fewer than {MIN_SAMPLES}); "
            "run more (--iters or --duration) before trusting this ratio"
        )
    elif (high - low) / ratio > MAX_RELATIVE_CI_WIDTH:
        warning = (
            f"the {confidence:.0%} interval [{low:.2f}, {high:.2f}] is wider than "
            f"{MAX_RELATIVE_CI_WIDTH:.0%} of the ratio: the machine was too noisy; close other work and run longer"
        )
    return SpeedUp(
        ratio=ratio,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
        trustworthy=warning is None,
        warning=warning,
    )
