"""The package's vocabularies, defined once: the CLI's choices and every config's checks come from them."""

QUANTIZERS = ("pact", "lsq", "dorefa", "interval")
BACKWARDS = ("ste", "ewgs")
GRANULARITIES = ("per_channel", "per_tensor")
ACT_SIGNS = ("auto", "unsigned", "signed")
METHODS = ("fp", "sqakd", "ce", "ce+kd")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "constant")
TARGETS = ("tensorrt", "onnxruntime")  # what an INT8 graph's Q/DQ are written for
PRECISIONS = ("fp32", "fp16", "int8")  # engine and graph precisions
MIN_OPSET, MAX_OPSET = 13, 20  # per-channel Q/DQ needs 13, the highest TensorRT 8.2 (Jetson Nano) reads
GRAPH_KEYS = ("fp32", "int8", "eager")  # the graphs a bench times
