"""The training step as a module (DistillationTask) and the explicit quantizer initialisation."""

from __future__ import annotations

import copy

import torch

from sqakd_edge.config import QuantConfig, TrainConfig
from sqakd_edge.quant import initialize_quantizers, prepare_qat, uninitialized_quantizers
from sqakd_edge.train.loss import kd_loss
from sqakd_edge.train.task import DistillationTask


def _student(float_model, **quant):
    return prepare_qat(copy.deepcopy(float_model), QuantConfig(wbits=4, abits=4, **quant))


def test_initialize_quantizers_sets_every_range_once_and_keeps_the_mode(float_model):
    student = _student(float_model).train()
    cold = uninitialized_quantizers(student)
    assert cold
    batch = torch.randn(8, 1, 16, 16)
    assert sorted(initialize_quantizers(student, batch)) == sorted(cold)
    assert student.training and uninitialized_quantizers(student) == []
    assert initialize_quantizers(student, batch) == []  # a second call initialises nothing


def test_sqakd_task_returns_the_kl_to_a_frozen_teacher_kept_out_of_the_module(float_model):
    student = _student(float_model)
    images = torch.randn(8, 1, 16, 16)
    initialize_quantizers(student, images)
    config = TrainConfig(method="sqakd", temperature=4.0, amp=False)
    teacher = copy.deepcopy(float_model)
    task = DistillationTask(student, config, teacher, torch.device("cpu"))
    task.train()
    assert not task.teacher.training  # task.train() does not reach the teacher
    assert not any(p.requires_grad for p in task.teacher.parameters())
    assert all(key.startswith("student.") for key in task.state_dict())  # no teacher weights in any state_dict
    out = task(images, torch.full((8,), -1))  # SQAKD reads no labels
    assert set(out) == {"loss", "kd", "output"}
    with torch.no_grad():
        expected = kd_loss(student(images), float_model.eval()(images), 4.0)
    assert torch.allclose(out["loss"], expected, atol=1e-5)
    out["loss"].backward()
    assert any(p.grad is not None for p in student.parameters())


def test_labelled_baselines_and_ewgs_schedule(float_model):
    student = _student(float_model, backward="ewgs", ewgs_update_every=0)
    labels = torch.randint(0, 4, (8,))
    task = DistillationTask(student, TrainConfig(method="ce", amp=False), None, torch.device("cpu"),
                            QuantConfig(backward="ewgs", ewgs_update_every=0))
    assert task.teacher is None and task.teacher_logits(torch.randn(2, 1, 16, 16)) is None
    assert set(task(torch.randn(8, 1, 16, 16), labels)) == {"loss", "ce", "output"}
    assert task.wants_ewgs_update(step=5, batch_index=0) and not task.wants_ewgs_update(step=5, batch_index=1)
    every = DistillationTask(student, TrainConfig(method="ce", amp=False), None, torch.device("cpu"),
                             QuantConfig(backward="ewgs", ewgs_update_every=4))
    assert every.wants_ewgs_update(8, 3) and not every.wants_ewgs_update(9, 0)
