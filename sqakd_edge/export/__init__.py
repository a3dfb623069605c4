"""Export: exact BN folding, lowering to QDQ ONNX (TensorRT or ONNX Runtime), a linter, and a parity check.

``export_checkpoint(ckpt, out_dir, ExportConfig(...))`` is the entry point; ``lint_file(path)`` checks any
ONNX file against TensorRT's Q/DQ rules. Names are imported lazily so ``check`` does not load torch.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "ExportConfig": "api", "ExportInputs": "api", "ExportResult": "api", "export_checkpoint": "api",
    "export_model": "api", "Finding": "lint", "lint_file": "lint", "lint_model": "lint",
    "ParityThresholds": "parity", "fold_batchnorm": "fold",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
