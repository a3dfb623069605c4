#!/usr/bin/env python
"""Where an ONNX graph spends its time in ONNX Runtime: median latency and the share of each operator type.

Runs ORT's own profiler (all graph optimisations on, as the bench runs) on standard-normal input, 3
warm-up and 10 timed runs, and sums the kernel times per operator type of the optimised graph. This is
how the placement notes in ``bench_speed.md`` were measured (e.g. QLinearConv's share of our INT8
ResNet-18, the Transposes around the first stage).

    python benchmarks/ort_profile.py EXPORT_DIR/model.int8.onnx [--batch 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not os.path.isfile(args.model):
        parser.error(f"{args.model} is not a file; pass an .onnx graph (e.g. from bench_speed.py --keep-graphs)")

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort_profile")
    sess = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    first = sess.get_inputs()[0]
    shape = [args.batch, *(int(d) for d in first.shape[1:])]
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    for _ in range(3):
        sess.run(None, {first.name: x})
    times = []
    for _ in range(10):
        start = time.perf_counter()
        sess.run(None, {first.name: x})
        times.append(time.perf_counter() - start)
    trace = sess.end_profiling()
    with open(trace) as handle:
        events = json.load(handle)
    os.remove(trace)
    per_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values()) or 1
    print(f"{args.model}: batch {args.batch}, {args.threads} thread(s), median {np.median(times) * 1e3:.1f} ms "
          "(profiling on)")
    for op, duration in per_op.most_common():
        print(f"  {op:26s} {100 * duration / total:5.1f}%")


if __name__ == "__main__":
    main()
