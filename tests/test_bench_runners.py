"""Runners and the timing loop on tiny real graphs (ONNX Runtime) and a real PyTorch module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sqakd_edge.bench.inputs import EvalData, random_batch, top1
from sqakd_edge.bench.measure import measure
from sqakd_edge.bench.runners import OrtRunner, TorchRunner
from sqakd_edge.errors import EngineError

from .bench_fixtures import cached_export, tiny_model


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return cached_export(tmp_path_factory)


def test_ort_runner_runs_the_graph_like_pytorch(export):
    batch = random_batch((1, 8, 8), 4, seed=0)
    with OrtRunner(export / "model.fp32.onnx", name="fp32", precision_requested="fp32", threads=1) as runner:
        logits = runner.infer(batch)
        assert runner.input_shape() == ["batch", 1, 8, 8]
        assert runner.placement["int8_layers"] == 0 and runner.placement["float_layers"] == 3
    with torch.no_grad():
        expected = tiny_model(0)(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert not runner.is_active and runner.session is None


def test_int8_graph_reports_integer_kernels(export):
    with OrtRunner(export / "model.int8.onnx", name="int8", precision_requested="int8", threads=1) as runner:
        runner.infer(random_batch((1, 8, 8), 2, seed=0))
        info = runner.info()
    assert runner.precision_ran == "int8"
    assert info["placement"]["int8_layers"] == 3  # two QLinearConv + one QGemm after ORT's fusion
    assert info["inter_op_threads"] == 1 and info["threads"] == 1


def test_a_graph_without_integer_kernels_is_not_labelled_int8(export):
    # The FP32 graph offered as "int8": nothing runs on integer kernels, so it must read as FP32.
    with OrtRunner(export / "model.fp32.onnx", name="int8", precision_requested="int8", threads=1) as runner:
        assert runner.precision_ran == "fp32"


def test_torch_runner_matches_and_restores_threads():
    model = tiny_model(0)
    before = torch.get_num_threads()
    batch = random_batch((1, 8, 8), 3, seed=1)
    with TorchRunner(lambda: model, threads=1) as runner:
        assert torch.get_num_threads() == 1
        out = runner.infer(batch)
        assert runner.info()["runtime"] == "pytorch"
    assert torch.get_num_threads() == before
    with torch.no_grad():
        np.testing.assert_allclose(out, model(torch.from_numpy(batch)).numpy(), atol=1e-6)
    with TorchRunner(model, threads=1) as runner:  # a module works as well as a loader
        assert runner.infer(batch).shape == (3, 10)


def test_ort_runner_errors_are_one_line(export, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx graph")
    with pytest.raises(EngineError, match="ONNX Runtime cannot load bad.onnx") as info:
        OrtRunner(bad, name="fp32", precision_requested="fp32", threads=1).activate()
    assert "\n" not in str(info.value)
    with OrtRunner(export / "model.fp32.onnx", name="fp32", precision_requested="fp32", threads=1) as runner:
        with pytest.raises(EngineError, match="failed to run"):
            runner.infer(random_batch((1, 9, 9), 1, seed=0)[:, :, :, :5])


class CountingRunner:
    """A real runner's interface around a counter: records the order in which runners ran."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def infer(self, batch):
        self.log.append(self.name)
        return batch


def test_measure_alternates_rounds_and_rotates_the_order():
    log: list[str] = []
    runners = [CountingRunner("a", log), CountingRunner("b", log), CountingRunner("c", log)]
    samples = measure(runners, np.zeros(1), warmup_iters=1, iters=5, round_iters=2)
    assert log[:3] == ["a", "b", "c"]  # warm-up, in turns
    timed = log[3:]
    # rounds of 2, 2, 1 iterations; the first runner of each round rotates a -> b -> c
    assert timed == ["a", "a", "b", "b", "c", "c", "b", "b", "c", "c", "a", "a", "c", "a", "b"]
    assert {k: len(v) for k, v in samples.items()} == {"a": 5, "b": 5, "c": 5}
    assert all((v > 0).all() for v in samples.values())


def test_measure_by_duration_runs_whole_rounds():
    log: list[str] = []
    runners = [CountingRunner("a", log), CountingRunner("b", log)]
    samples = measure(runners, np.zeros(1), warmup_iters=0, duration_s=0.01, round_iters=3)
    assert len(samples["a"]) == len(samples["b"]) >= 3
    assert len(samples["a"]) % 3 == 0


def test_top1_with_a_fixed_batch_pads_and_drops_the_padding(export):
    images = random_batch((1, 8, 8), 10, seed=4)
    with torch.no_grad():
        labels = tiny_model(0)(torch.from_numpy(images)).argmax(1).numpy()
    labels[0] = (labels[0] + 1) % 10  # one wrong label: 9 of 10 correct
    data = EvalData(images, labels, "test", "test", True, (0.5,), (0.25,))
    with OrtRunner(export / "model.fp32.onnx", name="fp32", precision_requested="fp32", threads=1) as runner:
        assert top1(runner.infer, data, batch=4) == {"top1": 0.9, "correct": 9, "n": 10}
        calls = []
        result = top1(lambda x: calls.append(len(x)) or runner.infer(x), data, batch=4, fixed_batch=True)
    assert result["correct"] == 9 and calls == [4, 4, 4]
