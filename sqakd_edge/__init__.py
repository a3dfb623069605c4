"""sqakd-edge: SQAKD quantization-aware distillation, carried from training to an edge device.

Importing the package is cheap: it loads no torch, onnx, onnxruntime, tensorrt or matplotlib.
Each stage lives in its own subpackage (``quant``, ``train``, ``export``, ``bench``).
"""

__version__ = "0.1.0"

# The Python API (``sqakd_edge.api``), loaded on first use so that ``import sqakd_edge`` stays free of torch.
_API = {"prepare_student": "api", "initialize_quantizers": "api", "SQAKDLoss": "api", "export_student": "api",
        "QuantConfig": "config", "TrainConfig": "config", "InputContract": "config"}
__all__ = ["__version__", *_API]


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 module attribute
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'sqakd_edge' has no attribute {name!r}")
