"""The embedded Fashion-MNIST subset, and the full set from Debian's IDX files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sqakd_edge.data import open_dataset
from sqakd_edge.data.embedded import SUBSET_FILE, load_subset
from sqakd_edge.data.fashion_mnist import CLASSES, DEFAULT_ROOT

REPO = Path(__file__).resolve().parents[1]
needs_debian = pytest.mark.skipif(
    not (DEFAULT_ROOT / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)


def test_subset_file_is_small_balanced_and_licensed():
    assert SUBSET_FILE.stat().st_size < 5 * 2**20
    arrays = load_subset()
    assert arrays["train_images"].shape == (6000, 28, 28) and arrays["train_images"].dtype == np.uint8
    assert arrays["test_images"].shape == (1000, 28, 28)
    assert np.bincount(arrays["train_labels"]).tolist() == [600] * 10
    assert np.bincount(arrays["test_labels"]).tolist() == [100] * 10
    licence = (SUBSET_FILE.parent / "LICENSE-fashion-mnist.txt").read_text()
    assert "Copyright (c) 2017 Zalando SE" in licence and "MIT License" in licence


@pytest.mark.parametrize(("split", "size"), [("train", 6000), ("test", 1000), ("val", 1000)])
def test_open_embedded(split, size):
    info = open_dataset("embedded", split)
    assert (info.name, info.num_classes, info.in_channels, info.input_size) == ("fashion-mnist-embedded", 10, 1, 28)
    assert info.labelled and info.classes == CLASSES and len(info.dataset) == size
    image, label = info.dataset[0]
    assert image.dtype == torch.float32 and image.shape == (1, 28, 28) and isinstance(label, int)


def test_embedded_statistics_come_from_its_training_split():
    info = open_dataset("embedded", "test")
    train = load_subset()["train_images"] / 255.0
    assert info.mean[0] == pytest.approx(train.mean(), abs=1e-4)
    assert info.std[0] == pytest.approx(train.std(), abs=1e-4)
    # The evaluation transform is exactly (pixel / 255 - mean) / std.
    image, label = info.dataset[7]
    raw = load_subset()["test_images"][7] / 255.0
    np.testing.assert_allclose(image[0].numpy() * info.std[0] + info.mean[0], raw, atol=1e-5)
    assert label == int(load_subset()["test_labels"][7])


def test_augmentation_is_random_and_evaluation_is_deterministic():
    plain = open_dataset("embedded", "train", augment=False).dataset
    assert torch.equal(plain[3][0], plain[3][0])
    augmented = open_dataset("embedded", "train", augment=True).dataset
    torch.manual_seed(0)
    views = [augmented[3][0] for _ in range(8)]
    assert all(v.shape == (1, 28, 28) for v in views)
    assert any(not torch.equal(views[0], v) for v in views[1:])


def test_input_size_resizes():
    info = open_dataset("embedded", "train", augment=True, input_size=32)
    assert info.input_size == 32 and info.dataset[0][0].shape == (1, 32, 32)


@needs_debian
def test_full_fashion_mnist_from_debian():
    train = open_dataset("fashion-mnist", "train")
    test = open_dataset("fashion-mnist", "test")
    assert (len(train.dataset), len(test.dataset)) == (60000, 10000)
    # The well-known statistics of Fashion-MNIST's training set.
    assert train.mean == test.mean and train.mean[0] == pytest.approx(0.2860, abs=1e-3)
    assert train.std[0] == pytest.approx(0.3530, abs=1e-3)


@needs_debian
def test_generation_script_reproduces_the_shipped_file():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_embedded_subset.py"), "--check"],
        capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches" in result.stdout
