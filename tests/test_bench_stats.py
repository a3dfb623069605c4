"""Latency statistics and the bootstrap speed-up on samples with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from sqakd_edge.bench.stats import MIN_SAMPLES, speedup, summarize


def test_summary_of_one_to_hundred_matches_hand_computed_values():
    s = summarize(np.arange(1, 101), batch=4)
    assert s.n == 100
    assert s.median_ms == 50.5
    assert s.p90_ms == pytest.approx(90.1)  # numpy's linear interpolation: 1 + 0.9 * 99
    assert s.p99_ms == pytest.approx(99.01)
    assert s.mean_ms == 50.5
    assert s.std_ms == pytest.approx(np.sqrt(100 * 101 / 12))  # sample std of 1..n is sqrt(n(n+1)/12)
    assert (s.min_ms, s.max_ms) == (1, 100)
    assert s.iqr_ms == pytest.approx(49.5)
    assert s.throughput_ips == pytest.approx(4 * 1000 / 50.5)
    assert s.noisy  # IQR is 98% of the median


def test_summary_of_one_sample_and_a_tight_sample():
    assert summarize([2.0], batch=1).std_ms == 0.0
    tight = summarize(10 + 0.01 * np.sin(np.arange(200)), batch=1)
    assert not tight.noisy
    assert tight.median_ms == pytest.approx(10, abs=0.01)


@pytest.mark.parametrize("bad", [[], [1.0, -1.0], [1.0, float("nan")], [0.0]])
def test_summary_rejects_empty_or_non_positive_samples(bad):
    with pytest.raises(ValueError):
        summarize(bad, batch=1)


def _lognormal(rng, median, sigma, n):
    return median * np.exp(sigma * rng.standard_normal(n))


def test_speedup_is_ratio_of_medians_and_reproducible():
    rng = np.random.default_rng(1)
    base, cand = _lognormal(rng, 10.0, 0.05, 200), _lognormal(rng, 4.0, 0.05, 200)
    s = speedup(base, cand, seed=3)
    assert s.ratio == pytest.approx(np.median(base) / np.median(cand))
    assert s.ci_low < s.ratio < s.ci_high
    assert s.ci_low < 2.5 < s.ci_high
    assert s.trustworthy and s.warning is None
    assert speedup(base, cand, seed=3) == s  # seeded: the same interval every time
    assert speedup(cand, base, seed=3).ratio == pytest.approx(1 / s.ratio)


def test_bootstrap_interval_covers_the_true_ratio_most_of_the_time():
    # 95% intervals should contain the true ratio (2.5) in about 95 of 100 independent experiments.
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(100):
        base, cand = _lognormal(rng, 10.0, 0.2, 60), _lognormal(rng, 4.0, 0.2, 60)
        s = speedup(base, cand, resamples=500, seed=trial)
        covered += s.ci_low <= 2.5 <= s.ci_high
    assert covered >= 85


def test_few_samples_are_not_trustworthy():
    s = speedup([10.0] * (MIN_SAMPLES - 1), [5.0] * (MIN_SAMPLES - 1))
    assert s.ratio == 2.0
    assert not s.trustworthy
    assert "--iters" in s.warning


def test_wide_spread_is_not_trustworthy():
    rng = np.random.default_rng(2)
    s = speedup(_lognormal(rng, 10.0, 0.8, 40), _lognormal(rng, 8.0, 0.8, 40))
    assert (s.ci_high - s.ci_low) / s.ratio > 0.2
    assert not s.trustworthy
    assert "too noisy" in s.warning


def test_speedup_rejects_bad_confidence():
    with pytest.raises(ValueError):
        speedup([1.0], [1.0], confidence=1.0)
