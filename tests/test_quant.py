import itertools

import pytest
import torch

from sqakd_edge.config import QuantConfig
from sqakd_edge.errors import ConfigError
from sqakd_edge.quant import (
    NotDeployable,
    QuantConv2d,
    QuantLinear,
    iter_quant_layers,
    prepare_qat,
    set_quantization,
    to_float,
    weighted_layer_names,
)
from sqakd_edge.quant.grid import signed_map, unsigned_map
from sqakd_edge.quant.quantizers import IntervalActivation, LSQWeight
from sqakd_edge.quant.rounding import round_ewgs

FAMILIES = ["pact", "lsq", "dorefa", "interval"]


def _capture_inputs(model, x):
    """The input each quant layer's activation quantizer saw, and its output."""
    seen = {}

    def hook(name):
        def fn(module, args, out):
            seen[name] = (args[0].detach(), out.detach())
        return fn

    handles = [layer.act_quantizer.register_forward_hook(hook(n)) for n, layer in iter_quant_layers(model)]
    model(x)
    for h in handles:
        h.remove()
    return seen


def _assert_on_grid(values, grid):
    scale = grid.scale
    if grid.axis is not None and scale.dim() == 1:
        scale = scale.reshape(-1, *([1] * (values.dim() - 1)))
    q = values / scale
    assert torch.allclose(q, q.round(), atol=1e-3), "values are not integer multiples of the scale"
    assert q.round().min() >= grid.qmin and q.round().max() <= grid.qmax


@pytest.mark.parametrize("family,bits,granularity", list(itertools.product(
    FAMILIES, [1, 2, 3, 4, 8], ["per_channel", "per_tensor"])))
def test_outputs_lie_on_the_stated_grid(float_model, family, bits, granularity):
    cfg = QuantConfig(quantizer=family, wbits=bits, abits=bits, weight_granularity=granularity)
    student = prepare_qat(float_model, cfg).eval()
    x = torch.randn(4, 1, 16, 16)
    seen = _capture_inputs(student, x)
    assert seen, "no quant layer ran"
    for name, layer in iter_quant_layers(student):
        wgrid = layer.weight_grid()
        _assert_on_grid(layer.quantized_weight().detach(), wgrid)
        assert wgrid.fits_int8(), f"{name}: deployable weight grid {wgrid.qmin}..{wgrid.qmax} must fit int8"
        agrid = layer.input_grid()
        _assert_on_grid(seen[name][1], agrid)
        assert agrid.fits_int8()


def test_grid_levels():
    assert (unsigned_map(4, int8_safe=True).qmin, unsigned_map(4, int8_safe=True).qmax) == (0, 15)
    assert unsigned_map(8, int8_safe=True).qmax == 127  # TensorRT's signed int8 holds post-ReLU 8-bit as [0,127]
    assert unsigned_map(8, int8_safe=False).qmax == 255
    assert (signed_map(4, "full").qmin, signed_map(4, "full").qmax) == (-8, 7)
    assert (signed_map(4, "narrow").qmin, signed_map(4, "narrow").qmax) == (-7, 7)
    odd = signed_map(2, "odd")
    assert odd.to_q(torch.arange(odd.kmin, odd.kmax + 1.0)).tolist() == [-3, -1, 1, 3]
    assert signed_map(1, "full").to_q(torch.tensor([0.0, 1.0])).tolist() == [-1, 1]  # 1 bit is always +-1


def test_paper_grids_are_refused_where_int8_cannot_hold_them(float_model):
    student = prepare_qat(float_model, QuantConfig(quantizer="interval", wbits=8, abits=8, deployable=False))
    student(torch.randn(4, 1, 16, 16))
    layer = next(layer for _, layer in iter_quant_layers(student))
    grid = layer.weight_grid()
    assert grid.bits_needed == 9 and not grid.fits_int8()  # 256 odd levels: -255..255
    act = IntervalActivation(4, deployable=False, sign="signed")
    act(torch.randn(100))
    with pytest.raises(NotDeployable, match="non-zero lower bound"):
        act.grid()


def test_ewgs_backward_matches_the_formula():
    u = torch.tensor([0.2, 0.7, -1.4, 2.5, 3.1], requires_grad=True)
    g = torch.tensor([1.0, -2.0, 0.5, -0.3, 4.0])
    delta = torch.tensor(0.3)
    k = round_ewgs(u, delta)
    assert torch.equal(k, torch.round(u.detach()))
    k.backward(g)
    expected = g * (1 + delta * torch.sign(g) * (u.detach() - torch.round(u.detach())))
    assert torch.allclose(u.grad, expected)


def test_ste_backward_is_identity():
    u = torch.randn(50, requires_grad=True)
    g = torch.randn(50)
    round_ewgs(u, torch.tensor(0.0)).backward(g)
    assert torch.equal(u.grad, g)


def test_lsq_step_gets_the_lsq_gradient():
    q = LSQWeight(3, channels=None)
    w = torch.tensor([[0.05, -0.4, 0.9, 3.0]])
    q(w)  # initialise
    q.step.data.fill_(0.25)
    w.requires_grad_(True)
    q(w).sum().backward()
    # LSQ: d(out)/ds = round(x/s) - x/s inside the range, qmin or qmax outside; times g = 1/sqrt(N*Qp)
    v = w.detach() / 0.25
    inside = (v >= -4) & (v <= 3)
    per = torch.where(inside, torch.round(v) - v, v.clamp(-4, 3))
    expected = per.sum() / (4 * 3) ** 0.5
    assert torch.allclose(q.step.grad, expected, atol=1e-6)
    assert torch.equal(w.grad, inside.float())  # STE inside the clip, zero outside


@pytest.mark.parametrize("family", FAMILIES)
def test_quantizer_parameters_learn(float_model, family):
    student = prepare_qat(float_model, QuantConfig(quantizer=family, wbits=3, abits=3)).train()
    student(torch.randn(8, 1, 16, 16)).logsumexp(1).mean().backward()
    grads = {n: p.grad for n, p in student.named_parameters() if "quantizer" in n and p.requires_grad}
    if family == "dorefa":  # DoReFa has no learned quantizer parameters (its residual quantizers are LSQ)
        assert grads and all(".act_quantizer." not in n and ".weight_quantizer." not in n for n in grads)
    else:
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_prepare_qat_policy_and_round_trip(float_model):
    names = weighted_layer_names(float_model)
    student = prepare_qat(float_model, QuantConfig(keep_float=("layer1.0.conv1",)))
    kinds = {n: type(m) for n, m in student.named_modules() if n in names}
    assert kinds[names[0]] is torch.nn.Conv2d and kinds[names[-1]] is torch.nn.Linear  # first/last stay float
    assert kinds["layer1.0.conv1"] is torch.nn.Conv2d
    assert kinds["layer1.0.conv2"] is QuantConv2d
    assert not any(isinstance(m, (QuantConv2d, QuantLinear)) for m in float_model.modules()), "input was modified"
    all_q = prepare_qat(float_model, QuantConfig(keep_first_last_float=False))
    assert isinstance(all_q.fc, QuantLinear)

    x = torch.randn(2, 1, 16, 16)
    set_quantization(student, False)
    assert torch.allclose(student(x), float_model(x), atol=1e-6)
    back = to_float(student)
    assert not list(iter_quant_layers(back))
    assert torch.allclose(back(x), float_model(x), atol=1e-6)
    frozen = to_float(student)
    for p in frozen.parameters():
        p.requires_grad_(False)
    assert all(p.requires_grad for p in prepare_qat(frozen, QuantConfig()).parameters() if p.dim() > 1)
    with pytest.raises(ConfigError, match="already holds quant layers"):
        prepare_qat(student, QuantConfig())
    with pytest.raises(ConfigError, match="unknown layer"):
        prepare_qat(float_model, QuantConfig(keep_float=("nope",)))


def test_eight_bit_student_starts_close_to_the_teacher(float_model):
    x = torch.randn(16, 1, 16, 16)
    ref = float_model(x)
    for family in ("lsq", "pact", "interval"):
        student = prepare_qat(float_model, QuantConfig(quantizer=family, wbits=8, abits=8)).eval()
        student(x)
        assert (student(x).argmax(1) == ref.argmax(1)).float().mean() >= 0.8
        # 0.3: 18 layer inputs and 18 residual quantizers at 8 bits, ranges from one untrained batch
        assert (student(x) - ref).abs().max() < 0.3 * ref.abs().max()


@pytest.mark.parametrize("kwargs,match", [
    ({"wbits": 0}, "wbits must be an integer from 1 to 8"),
    ({"abits": 9}, "abits must be an integer from 1 to 8"),
    ({"quantizer": "apot"}, "unknown quantizer 'apot'; choose one of: pact, lsq, dorefa, interval"),
    ({"backward": "ewgs2"}, "unknown backward"),
])
def test_bad_quant_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        QuantConfig(**kwargs)


@pytest.mark.parametrize("family,backward,granularity", list(itertools.product(
    FAMILIES, ["ste", "ewgs"], ["per_channel", "per_tensor"])))
def test_fused_fake_quant_equals_the_op_by_op_path(float_model, family, backward, granularity):
    from sqakd_edge.quant import iter_quantizers

    cfg = QuantConfig(quantizer=family, backward=backward, wbits=3, abits=3, weight_granularity=granularity,
                      ewgs_delta_init=0.2)
    x = torch.randn(6, 1, 16, 16)
    results = []
    for op_by_op in (False, True):
        torch.manual_seed(0)
        student = prepare_qat(float_model, cfg).train()
        student(x)  # initialise
        for _, q in iter_quantizers(student):
            q.capture_levels = op_by_op  # the EWGS Hessian path: rounding as separate graph nodes
        xi = x.clone().requires_grad_(True)
        out = student(xi)
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
        grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
        results.append((out.detach(), xi.grad, grads))
    (out_a, gx_a, g_a), (out_b, gx_b, g_b) = results
    assert torch.equal(out_a, out_b)
    # round-off differs with the order of operations; sums that cancel (tiny gradients) get an absolute floor
    floor = 1e-6 * max(float(g.abs().max()) for g in g_a.values())

    def close(a, b):
        return float((a - b).abs().max()) <= 1e-4 * float(a.abs().max()) + floor

    assert close(gx_a, gx_b)
    assert g_a.keys() == g_b.keys()
    for name in g_a:
        assert close(g_a[name], g_b[name]), name
