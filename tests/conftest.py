"""Shared fixtures: tiny models and in-memory data, so unit tests run in seconds."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from sqakd_edge.models import create_model
from sqakd_edge.quant import cpu_kernels


def pytest_sessionstart(session: pytest.Session) -> None:
    """Build the fused CPU fake-quant kernels once (~30 s on a fresh machine) before any test trains, so the
    tests that train in a subprocess under a timeout load them from the cache."""
    cpu_kernels.kernels()

# Tiny tensors gain nothing from two threads, and a busy 2-core machine makes OpenMP threads spin
# against each other; one thread keeps test times steady.
torch.set_num_threads(1)


class Unlabeled(Dataset):
    """Images with label -1: what an unlabeled folder yields."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], -1


def toy_images(n: int = 192, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable 1x16x16 images in 4 classes (the class sets which quadrant is bright)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = torch.randn(n, 1, 16, 16, generator=g) * 0.3
    for i, c in enumerate(labels.tolist()):
        r, col = divmod(c, 2)
        images[i, 0, r * 8:(r + 1) * 8, col * 8:(col + 1) * 8] += 1.5
    return images, labels


@pytest.fixture
def toy_data():
    images, labels = toy_images()
    return TensorDataset(images, labels)


@pytest.fixture
def toy_meta():
    return {"name": "resnet20", "num_classes": 4, "in_channels": 1, "input_size": 16}


@pytest.fixture
def float_model():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=4, in_channels=1)
    model.train()
    with torch.no_grad():  # realistic BN statistics
        for _ in range(3):
            model(torch.randn(32, 1, 16, 16))
    return model.eval()
