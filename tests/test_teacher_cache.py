"""The teacher-logit cache of augmentation-free runs: what it keeps, when it serves, and that fit trains the same."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch.utils.data import TensorDataset

from sqakd_edge.config import QuantConfig, TrainConfig
from sqakd_edge.quant import initialize_quantizers, prepare_qat
from sqakd_edge.train import teacher_cache
from sqakd_edge.train.loop import RunData, fit
from sqakd_edge.train.task import DistillationTask
from sqakd_edge.train.teacher_cache import IndexedDataset, TeacherLogitCache

from .conftest import Unlabeled, toy_images

CPU = torch.device("cpu")


def test_the_cache_serves_a_batch_only_when_every_example_is_stored_and_keeps_the_teachers_dtype():
    cache = TeacherLogitCache(10, CPU)
    first = torch.tensor([0, 3, 7])
    assert cache.lookup(first) is None  # nothing stored yet
    logits = torch.randn(3, 4).to(torch.bfloat16)
    cache.store(first, logits)
    assert cache.table is not None and cache.table.dtype == torch.bfloat16  # bfloat16 kept as produced
    served = cache.lookup(torch.tensor([7, 0]))
    assert served is not None and served.dtype == torch.float32
    assert torch.equal(served, logits[[2, 0]].float())
    assert cache.lookup(torch.tensor([0, 1])) is None  # example 1 was never seen: the teacher must run
    assert cache.hits == 1


def test_a_table_over_the_budget_is_not_allocated_and_says_why():
    cache = TeacherLogitCache(1000, CPU, max_bytes=1000)
    cache.store(torch.arange(4), torch.randn(4, 10))
    assert cache.table is None and cache.lookup(torch.arange(4)) is None
    assert cache.off is not None and "1000 examples x 10 outputs" in cache.off


def test_indexed_dataset_appends_the_index():
    data = IndexedDataset(TensorDataset(torch.arange(5.0), torch.arange(5)))
    assert len(data) == 5 and data[3] == (torch.tensor(3.0), torch.tensor(3), 3)


def test_the_task_runs_the_teacher_once_per_example_and_gives_the_same_logits(float_model):
    quant = QuantConfig(wbits=4, abits=4)
    student = prepare_qat(copy.deepcopy(float_model), quant)
    images = torch.randn(8, 1, 16, 16)
    initialize_quantizers(student, images)
    config = TrainConfig(method="sqakd", amp=False, augment=False)
    cached = DistillationTask(student, config, copy.deepcopy(float_model), CPU, quant,
                              teacher_cache=TeacherLogitCache(8, CPU))
    plain = DistillationTask(student, config, copy.deepcopy(float_model), CPU, quant)
    calls = []
    cached.teacher.register_forward_hook(lambda *_: calls.append(1))
    indices = torch.arange(8)
    first = cached.teacher_logits(images, indices)
    again = cached.teacher_logits(images, indices)
    assert len(calls) == 1  # the second batch of the same examples is read back
    assert torch.equal(first, again) and torch.equal(first, plain.teacher_logits(images))
    cached.teacher_logits(images)  # without indices (e.g. the held-out evaluation) it always runs
    assert len(calls) == 2


@pytest.mark.parametrize("amp", [False, True], ids=["float32-teacher", "amp-teacher"])
def test_fit_without_augmentation_trains_the_same_with_and_without_the_cache(tmp_path, float_model, toy_meta,
                                                                              monkeypatch, amp):
    """amp: the teacher's bfloat16 forward where the CPU computes it natively (float32 elsewhere)."""
    images, _ = toy_images()
    data = RunData(Unlabeled(images), Unlabeled(images[:48]), None, False, {"spec": "toy"})
    quant = QuantConfig(quantizer="lsq", wbits=4, abits=4)
    config = TrainConfig(method="sqakd", epochs=3, batch_size=32, lr=2e-3, val_fraction=0.0, amp=amp,
                         augment=False)
    hits = []
    lookup = TeacherLogitCache.lookup

    def counted(self, indices):
        served = lookup(self, indices)
        hits.append((self.size, served is not None))
        return served

    monkeypatch.setattr(TeacherLogitCache, "lookup", counted)
    runs = {}
    for name, budget in (("cached", teacher_cache.MAX_BYTES), ("uncached", 0)):
        monkeypatch.setattr(teacher_cache, "MAX_BYTES", budget)
        hits.clear()
        student = prepare_qat(copy.deepcopy(float_model), quant)
        result = fit(student, data, config, tmp_path / name, model_meta=toy_meta, teacher=copy.deepcopy(float_model),
                     quant=quant, progress=False, log=lambda *_: None)
        runs[name] = (student.state_dict(), result.history, list(hits))
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["teacher_logits_cached"] is (name == "cached")
    cached, uncached = runs["cached"], runs["uncached"]
    steps = len(images) // 32
    training = [hit for size, hit in cached[2] if size == len(images)]
    held_out = [hit for size, hit in cached[2] if size == 48]
    # epoch 1 fills the table (a late epoch-1 batch may find all its examples stored), epochs 2-3 read it
    assert len(training) == 3 * steps and all(training[steps:])
    # the held-out split (48 examples: one evaluation batch per epoch) is read back after epoch 1
    assert held_out == [False, True, True]
    assert not any(hit for _, hit in uncached[2])  # a zero budget keeps nothing: every step runs the teacher
    for row, same in zip(cached[1], uncached[1], strict=True):  # the same losses and held-out KL, epoch by epoch
        assert {k: v for k, v in row.items() if k != "images_per_s"} == \
            {k: v for k, v in same.items() if k != "images_per_s"}
    for key, value in cached[0].items():
        assert torch.equal(value, uncached[0][key]), key


def test_the_held_out_and_test_splits_teacher_logits_are_read_back_with_augmentation_on(tmp_path, float_model,
                                                                                       toy_meta, monkeypatch):
    """Evaluation reads its splits in a fixed order through the plain transform: cached whatever ``augment`` is."""
    images, labels = toy_images()
    test = TensorDataset(*toy_images(64, seed=1))
    data = RunData(TensorDataset(images, labels), TensorDataset(images[:48], labels[:48]), test, True, {"spec": "toy"})
    quant = QuantConfig(quantizer="lsq", wbits=4, abits=4)
    config = TrainConfig(method="sqakd", epochs=2, batch_size=32, val_fraction=0.0, amp=False)
    calls = []
    original = TeacherLogitCache.logits

    def counted(self, indices, forward):
        return original(self, indices, lambda: calls.append(self.size) or forward())

    monkeypatch.setattr(TeacherLogitCache, "logits", counted)
    fit(prepare_qat(copy.deepcopy(float_model), quant), data, config, tmp_path, model_meta=toy_meta,
        teacher=copy.deepcopy(float_model), quant=quant, progress=False, log=lambda *_: None)
    assert sorted(calls) == [48, 64]  # each split's teacher forward ran in epoch 1 only; training has no cache
