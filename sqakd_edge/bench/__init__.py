"""Benchmarking exported graphs: statistics, runners, the driver, reports and plots.

Entry point: :func:`sqakd_edge.bench.api.run_bench`. Nothing in this package imports torch,
onnxruntime or matplotlib at import time; each is imported where it is used.
"""
