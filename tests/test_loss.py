import math

import pytest
import torch
import torch.nn.functional as F

from sqakd_edge.config import TrainConfig
from sqakd_edge.train.loss import kd_loss, training_loss


def test_kd_is_zero_for_equal_logits():
    logits = torch.randn(8, 10)
    assert kd_loss(logits, logits.clone(), 4.0).abs() < 1e-6


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0])
def test_kd_is_t_squared_kl_of_softened_outputs(t):
    s, te = torch.randn(5, 7), torch.randn(5, 7)
    p_t = F.softmax(te / t, 1)
    manual = (p_t * (p_t.log() - F.log_softmax(s / t, 1))).sum(1).mean() * t * t
    assert torch.allclose(kd_loss(s, te, t), manual, atol=1e-6)


def test_t_squared_keeps_gradients_comparable_across_temperatures():
    # For large T the KL gradient w.r.t. logits is ~ (s - t)/(N*C*T^2) * T^2: it does not vanish with T.
    s = torch.randn(4, 5, requires_grad=True)
    te = torch.randn(4, 5)
    norms = []
    for t in (4.0, 16.0):
        (g,) = torch.autograd.grad(kd_loss(s, te, t), s)
        norms.append(float(g.norm()))
    assert math.isclose(norms[0], norms[1], rel_tol=0.2)


def test_methods_combine_their_parts():
    s, te, y = torch.randn(6, 3), torch.randn(6, 3), torch.randint(0, 3, (6,))
    sq = training_loss(TrainConfig(method="sqakd"), s, None, te)
    assert set(sq) == {"loss", "kd"} and torch.equal(sq["loss"], sq["kd"])  # no labels anywhere
    ce = training_loss(TrainConfig(method="ce"), s, y, None)
    assert torch.allclose(ce["loss"], F.cross_entropy(s, y))
    both = training_loss(TrainConfig(method="ce+kd", kd_weight=0.25), s, y, te)
    assert torch.allclose(both["loss"], 0.75 * both["ce"] + 0.25 * both["kd"])
