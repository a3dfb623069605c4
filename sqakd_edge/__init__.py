"""sqakd-edge: SQAKD quantization-aware distillation, carried from training to an edge device.

Importing the package is cheap: it loads no torch, onnx, onnxruntime, tensorrt or matplotlib.
Each stage lives in its own subpackage (``quant``, ``train``, ``export``, ``bench``).
"""

__version__ = "0.1.0"
