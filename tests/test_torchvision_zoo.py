"""torchvision's model zoo is the test suite of "your own model": build, quantize, one SQAKD step, export, parity.

The CI subset is the smallest member of each family at W4A4 (both targets), but for the few families whose
smallest member takes a minute or more (``coverage.HEAVY``: wide ResNet, VGG, the transformers); ``-m slow``
runs those and every one of the 80
classification builders at W8A8 and W4A4 (``benchmarks/torchvision_coverage.py`` writes the same rows as a table,
``benchmarks/results/torchvision_coverage.md``). What is checked per model: no traceback; the layer policy
quantized every weighted layer the forward calls (but the first and last); both graphs exact (no grid had to be
re-quantized), lint-clean, and in parity with the PyTorch student (see ``verdict``: >= 99.9 % top-1 agreement
with ONNX Runtime's optimisations off, or, where the student's float32 rounding itself flips decisions, as
close to the float64 student as PyTorch's float32 is). The models have random weights trained 20 steps on a
synthetic task; their accuracy is not the point, their graphs are.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("torchvision_coverage", ROOT / "benchmarks" / "torchvision_coverage.py")
coverage = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(coverage)  # type: ignore[union-attr]


@pytest.fixture(autouse=True)
def _quiet_one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.set_num_threads(previous)


def assert_row(row):
    assert row["status"] == "ok", row.get("reason")
    assert row["quantized"] == row["weighted"] - 2 - len(row["kept_float"]), row
    for target in coverage.TARGETS:
        assert row[target]["exact"], (target, row)
    assert coverage.verdict(row).startswith("exact"), (coverage.verdict(row), row)


@pytest.mark.parametrize("name", coverage.CI_SUBSET)
def test_smallest_of_each_family_w4a4(name):
    (row,) = coverage.check(name, (4,))
    assert_row(row)


def test_every_family_is_in_the_ci_subset_or_named_heavy():
    every = torchvision.models.list_models(module=torchvision.models)
    families = {coverage.family(n) for n in every}
    covered = {coverage.family(n) for n in (*coverage.CI_SUBSET, *coverage.HEAVY)}
    assert families == covered, families ^ covered
    assert set(coverage.HEAVY) <= set(every) and set(coverage.CI_SUBSET) <= set(every)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(coverage.HEAVY))
def test_smallest_of_each_heavy_family_w4a4(name):
    (row,) = coverage.check(name, (4,))
    assert_row(row)


@pytest.mark.slow
@pytest.mark.parametrize("name", torchvision.models.list_models(module=torchvision.models))
def test_every_torchvision_classifier(name):
    for row in coverage.check(name, (8, 4)):
        if name.startswith(coverage.TRANSFORMERS) and row["status"] == "refused":
            assert row["reason"], row  # a transformer may be refused, with its reason
            continue
        assert_row(row)
