"""The memory layout training runs in: channels-last (NHWC) on CPU where the model runs in it.

oneDNN's convolutions run faster on NHWC tensors, forward and backward; BatchNorm, ReLU and the fake
quantizers are elementwise and do not care (``benchmarks/train_step.py`` measures the step, ``--layout
default`` in the default layout). The values are those of the default layout up to float rounding (the
convolutions sum in another order).

Not every model runs channels-last: ``x.view(n, -1)`` on a feature map (LeNet-style code) fails on a
tensor that is not contiguous. The layout is therefore decided by running the model once on two images
of the first batch, and a model that fails there keeps the default layout. On CUDA the layout is left
as it is.

``SQAKD_EDGE_LAYOUT=default`` keeps the default layout everywhere, for runs that must repeat one
another to the last digits: split over two processes, a channels-last run's first outputs agree to the
bit, but its weight gradients differ in the last bit (a half batch is summed in another order), and a
4-bit student's rounding amplifies that to 0.45 % in the held-out loss after one epoch
(``tests/test_ddp.py``; changing the layout in one process moves it 0.7 %), where the default layout
agrees within 0.1 %.
"""

from __future__ import annotations

import os

import torch
from torch import nn

DEFAULT = torch.contiguous_format


def in_layout(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """``x`` in ``memory_format`` when it is a 4-D batch; anything else unchanged."""
    return x.contiguous(memory_format=memory_format) if x.dim() == 4 and memory_format != DEFAULT else x


def training_layout(model: nn.Module, sample: torch.Tensor | None, device: torch.device) -> torch.memory_format:
    """Put ``model`` (in place) in the layout it trains fastest in, and return that layout.

    Args:
        model: the model, already on ``device``; its mode is kept.
        sample: a batch of its inputs (two images are run, in eval mode, without gradients); None keeps the
            default layout.
        device: where it runs; only CPUs switch to channels-last (unless ``SQAKD_EDGE_LAYOUT=default``).
    """
    if os.environ.get("SQAKD_EDGE_LAYOUT", "").lower() == "default":
        return DEFAULT
    if device.type != "cpu" or sample is None or sample.dim() != 4:
        return DEFAULT
    was_training = model.training
    model.to(memory_format=torch.channels_last)
    try:
        model.eval()
        with torch.no_grad():
            model(in_layout(sample[:2].to(device), torch.channels_last))
        return torch.channels_last
    except Exception:  # noqa: BLE001 -- any failure here only means "not in this layout"; training reports real ones
        model.to(memory_format=DEFAULT)
        return DEFAULT
    finally:
        model.train(was_training)


def restore_default_layout(model: nn.Module) -> None:
    """Give the caller back its model in the default layout (what export and user code expect)."""
    model.to(memory_format=DEFAULT)


class InLayout(nn.Module):
    """Runs ``model`` on its 4-D input converted to ``memory_format`` (the model is already in it)."""

    def __init__(self, model: nn.Module, memory_format: torch.memory_format) -> None:
        super().__init__()
        self.model = model
        self.memory_format = memory_format

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(in_layout(x, self.memory_format))
