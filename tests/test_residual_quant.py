"""Residual quantizers: where prepare_qat puts them, that they train, switch off, load from old checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch

from sqakd_edge.checkpoint import build_model_from_checkpoint, quant_config_of
from sqakd_edge.config import QuantConfig, to_dict
from sqakd_edge.errors import ConfigError
from sqakd_edge.models import create_model
from sqakd_edge.quant import prepare_qat, to_float
from sqakd_edge.quant.quantizers import LSQActivation, PACTActivation, Quantizer
from sqakd_edge.quant.residual import ResidualBranch


def _branches(model):
    return sorted(name for name, m in model.named_modules() if isinstance(m, ResidualBranch))


def _blocks(model):
    return sorted(name for name, m in model.named_modules() if hasattr(m, "output_quantizer"))


def test_resnet20_gets_a_branch_and_an_output_quantizer_per_block():
    s = prepare_qat(create_model("resnet20", 10, 3), QuantConfig())
    blocks = [f"layer{i}.{j}" for i in (1, 2, 3) for j in (0, 1, 2)]
    assert _branches(s) == [f"{b}.bn2" for b in blocks]
    assert _blocks(s) == blocks
    # layer names inside a block are unchanged (the output quantizer runs from a forward hook)
    assert "layer1.0.conv1.weight" in s.state_dict() and "layer1.0.output_quantizer.step" in s.state_dict()


def test_a_projection_shortcut_is_quantized_too():
    s = prepare_qat(create_model("resnet18", 200, 3), QuantConfig())
    assert {"layer2.0.downsample.1", "layer3.0.downsample.1", "layer4.0.downsample.1"} <= set(_branches(s))
    assert len(_branches(s)) == 8 + 3 and len(_blocks(s)) == 8


def test_mobilenet_v2_residual_blocks_and_models_without_adds():
    s = prepare_qat(create_model("mobilenet_v2", 10, 3), QuantConfig())
    assert len(_blocks(s)) == 10  # the stride-1, same-width inverted residuals
    # their branches, and 5 skips that are the projection output of a stage's first (non-residual) block
    assert len(_branches(s)) == 10 + 5
    assert {"features.2.conv.3", "features.4.conv.3", "features.7.conv.3"} <= set(_branches(s))
    assert _branches(prepare_qat(create_model("vgg8", 10, 3), QuantConfig())) == []


def test_residual_bits_zero_is_the_papers_student_and_bad_values_are_refused():
    s = prepare_qat(create_model("resnet20", 10, 3), QuantConfig(residual_bits=0))
    assert _branches(s) == [] and _blocks(s) == []
    for bad in (9, -1, True, 2.5):
        with pytest.raises(ConfigError, match="residual_bits must be an integer from 0"):
            QuantConfig(residual_bits=bad)  # type: ignore[arg-type]


def test_residual_quantizers_are_signed_or_unsigned_as_their_values_and_learn(float_model):
    s = prepare_qat(float_model, QuantConfig(quantizer="pact", wbits=4, abits=4, residual_bits=6)).train()
    x = torch.randn(8, 1, 16, 16)
    s(x).logsumexp(1).mean().backward()
    branch = s.get_submodule("layer1.0.bn2").quantizer
    block = s.get_submodule("layer1.0").output_quantizer
    assert isinstance(branch, PACTActivation) and branch.bits == 6
    assert bool(branch.signed)  # a pre-activation value
    assert not bool(block.signed)  # the block ends in a ReLU: unsigned, decided from the first batch
    assert branch.alpha.grad is not None and block.alpha.grad is not None
    # DoReFa's fixed [-1, 1] range cannot hold a residual stream: LSQ stands in
    dorefa = prepare_qat(float_model, QuantConfig(quantizer="dorefa"))
    assert isinstance(dorefa.get_submodule("layer1.0.bn2").quantizer, LSQActivation)


def test_the_residual_quantizers_change_the_output_and_to_float_switches_them_off(float_model):
    x = torch.randn(8, 1, 16, 16)
    with_rq = prepare_qat(float_model, QuantConfig(wbits=8, abits=8, residual_bits=2)).eval()
    without = prepare_qat(float_model, QuantConfig(wbits=8, abits=8, residual_bits=0)).eval()
    with torch.no_grad():
        with_rq(x), without(x)  # ranges from the first batch
        assert not torch.allclose(with_rq(x), without(x), atol=1e-3)  # 2-bit residual streams do something
        assert torch.allclose(to_float(with_rq)(x), float_model(x), atol=1e-5)  # off: the float model again
    standalone = [m for m in to_float(with_rq).modules() if isinstance(m, Quantizer)]
    assert standalone and not any(q.enabled for q in standalone)


def test_a_checkpoint_from_before_residual_quantizers_loads_without_them(float_model):
    old = prepare_qat(float_model, QuantConfig(residual_bits=0))
    quant = to_dict(QuantConfig())
    del quant["residual_bits"]  # what checkpoints written before the option record
    ckpt = {"kind": "student", "quant": quant, "state_dict": old.state_dict(),
            "model": {"name": "resnet20", "num_classes": 4, "in_channels": 1, "input_size": 16}}
    assert quant_config_of(ckpt).residual_bits == 0
    rebuilt = build_model_from_checkpoint(ckpt)
    assert _branches(rebuilt) == [] and _blocks(rebuilt) == []


def test_a_residual_stream_tensor_gets_one_quantizer_shared_with_the_layers_reading_it():
    s = prepare_qat(create_model("resnet18", 200, 3), QuantConfig(wbits=4, abits=4, residual_bits=8))
    # the stem's float output entering layer1.0: quantized by the block's pre-hook, with conv1's quantizer
    assert s.layer1[0].input_quantizer is s.layer1[0].conv1.act_quantizer
    # a block output read by the next block's conv1 and its projection shortcut
    out = s.layer1[1].output_quantizer
    assert out is s.layer2[0].conv1.act_quantizer is s.layer2[0].downsample[0].act_quantizer
    assert out.bits == 4  # the readers' abits, not residual_bits
    # read by the float classifier only: not shared, residual_bits
    assert s.layer4[1].output_quantizer.bits == 8
    assert s.layer4[0].output_quantizer is s.layer4[1].conv1.act_quantizer
    # branch outputs keep residual_bits
    assert s.get_submodule("layer1.0.bn2").quantizer.bits == 8


def test_separate_streams_keep_one_quantizer_per_reader():
    for config in (QuantConfig(share_residual_stream=False),
                   QuantConfig(quantizer="dorefa", learned_stream_step=False)):  # a DoReFa student of before
        s = prepare_qat(create_model("resnet20", 10, 3), config)
        assert not hasattr(s.layer1[0], "input_quantizer")
        assert s.layer1[0].output_quantizer is not s.layer1[1].conv1.act_quantizer
        assert s.layer1[0].output_quantizer.bits == 8


def test_a_dorefa_student_shares_its_stream_through_a_learned_step():
    """DoReFa's fixed [0, 1] range would clip the skip: the shared stream quantizer is LSQ's; the rest stays DoReFa."""
    from sqakd_edge.quant.quantizers import DoReFaActivation, DoReFaWeight, LSQActivation

    s = prepare_qat(create_model("resnet20", 10, 3), QuantConfig(quantizer="dorefa", wbits=4, abits=4))
    shared = s.layer1[0].output_quantizer
    assert shared is s.layer1[1].conv1.act_quantizer and isinstance(shared, LSQActivation) and shared.bits == 4
    assert isinstance(s.layer1[0].input_quantizer, LSQActivation)  # the first block's float skip
    assert isinstance(s.layer1[0].conv2.act_quantizer, DoReFaActivation)  # inside the block: DoReFa's own
    assert isinstance(s.layer1[0].conv1.weight_quantizer, DoReFaWeight)
    x = torch.randn(4, 3, 32, 32) * 3
    with torch.no_grad():
        s.eval()(x)
        stream = s.layer1[0](torch.relu(s.bn1(s.conv1(x))))
    assert float(stream.max()) > 1.0  # the skip is not clipped at DoReFa's 1


def test_a_shared_quantizer_leaves_its_readers_values_unchanged_and_survives_a_state_dict(float_model):
    shared = prepare_qat(float_model, QuantConfig(quantizer="lsq", wbits=4, abits=4)).eval()
    x = torch.randn(8, 1, 16, 16)
    with torch.no_grad():
        y = shared(x)
        # the reader's call of the shared quantizer is idempotent: skipping it changes nothing
        seen = {}
        hook = shared.layer1[1].conv1.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0]))
        shared(x)
        hook.remove()
        q = shared.layer1[1].conv1.act_quantizer
        assert q(seen["x"]) is seen["x"]  # its own output handed back: passed on, not quantized again
        assert torch.equal(q(seen["x"].clone()), seen["x"])  # and quantizing it again would change nothing
    with torch.inference_mode():  # inference tensors have no version counter: the plain second pass runs
        assert torch.equal(shared(x), y)
    assert torch.equal(pickle.loads(pickle.dumps(shared)).eval()(x).detach(), y)  # no weak reference pickled
    with torch.no_grad():
        # a checkpoint round trip keeps the aliasing and the values
        again = prepare_qat(float_model, QuantConfig(quantizer="lsq", wbits=4, abits=4)).eval()
        again.load_state_dict(shared.state_dict())
        assert again.layer1[0].output_quantizer is again.layer1[1].conv1.act_quantizer
        assert torch.equal(again(x), y)


def test_a_checkpoint_from_before_shared_streams_loads_with_separate_quantizers(float_model):
    old = prepare_qat(float_model, QuantConfig(share_residual_stream=False))
    quant = to_dict(QuantConfig())
    del quant["share_residual_stream"]
    ckpt = {"kind": "student", "quant": quant, "state_dict": old.state_dict(),
            "model": {"name": "resnet20", "num_classes": 4, "in_channels": 1, "input_size": 16}}
    assert quant_config_of(ckpt).share_residual_stream is False
    rebuilt = build_model_from_checkpoint(ckpt)
    assert rebuilt.layer1[0].output_quantizer is not rebuilt.layer1[1].conv1.act_quantizer


def test_a_dorefa_checkpoint_from_before_the_learned_stream_step_loads_as_it_was_trained(float_model):
    """Written before ``learned_stream_step``: a DoReFa student with one quantizer per reader, which must still fit."""
    old = prepare_qat(float_model, QuantConfig(quantizer="dorefa", learned_stream_step=False))
    quant = to_dict(QuantConfig(quantizer="dorefa"))
    del quant["learned_stream_step"]
    ckpt = {"kind": "student", "quant": quant, "state_dict": old.state_dict(),
            "model": {"name": "resnet20", "num_classes": 4, "in_channels": 1, "input_size": 16}}
    assert quant_config_of(ckpt).learned_stream_step is False
    rebuilt = build_model_from_checkpoint(ckpt)  # the state dict fits the structure it was saved from
    assert rebuilt.layer1[0].output_quantizer is not rebuilt.layer1[1].conv1.act_quantizer
    new = prepare_qat(float_model, QuantConfig(quantizer="dorefa"))
    assert set(new.state_dict()) != set(old.state_dict())  # the new student differs: the key matters
