"""glibc malloc settings for training: reuse freed tensor memory instead of faulting in fresh pages.

A training step allocates and frees the same large activation and gradient tensors every step. glibc
serves a block above its mmap threshold (128 KiB, raised dynamically to at most 32 MiB) with a fresh
``mmap`` and hands freed heap above its trim threshold back to the kernel, so every step writes to new
pages, and each 4 KiB page costs a page fault and a kernel zero-fill on first touch: thousands per step
for a fake-quant student, which makes more temporaries than a float model (``benchmarks/train_step.py``
measures the step, ``--malloc default`` with glibc's own settings). With both thresholds raised, freed
blocks stay in the heap and the next step reuses them.

The cost is that the process keeps its peak heap until it exits, which a training process reaches
anyway. ``SQAKD_EDGE_MALLOC=default`` leaves glibc's settings alone. Other C libraries (musl, macOS)
are left alone too.
"""

from __future__ import annotations

import ctypes
import os
import platform

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap (a batch of 224x224 activations is ~200 MB)
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt's C int takes: freed heap is kept
_applied = False


def reuse_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (idempotent).

    Returns:
        Whether the settings are in effect (False on other C libraries or with ``SQAKD_EDGE_MALLOC=default``).
    """
    global _applied
    if _applied:
        return True
    if os.environ.get("SQAKD_EDGE_MALLOC", "").lower() == "default":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
