"""The paper's model zoo: every registered model builds, runs, trains, exports and quantizes."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from sqakd_edge.config import QUANTIZERS, QuantConfig
from sqakd_edge.models import create_model, list_models, model_spec

PAPER_ZOO = {
    "resnet20": ("cifar", 32),
    "resnet32": ("cifar", 32),
    "vgg8": ("cifar", 32),
    "vgg13": ("cifar", 32),
    "resnet18": ("tinyimagenet", 64),
    "vgg11_bn": ("tinyimagenet", 64),
    "mobilenet_v2": ("tinyimagenet", 64),
    "shufflenet_v2_x0_5": ("tinyimagenet", 64),
    "squeezenet1_0": ("tinyimagenet", 64),
}
# Side of the last conv's output at the model's input size. torchvision's unadapted stems would
# give 2 (ResNet-18, MobileNet-V2, ShuffleNet-V2) or 3 (SqueezeNet) at 64x64.
LAST_CONV_SIDE = {
    "resnet20": 8, "resnet32": 8, "vgg8": 4, "vgg13": 4,
    "resnet18": 8, "vgg11_bn": 4, "mobilenet_v2": 4, "shufflenet_v2_x0_5": 8, "squeezenet1_0": 8,
}
TORCHVISION_CLASS = {
    "resnet18": torchvision.models.ResNet,
    "vgg11_bn": torchvision.models.VGG,
    "mobilenet_v2": torchvision.models.MobileNetV2,
    "shufflenet_v2_x0_5": torchvision.models.ShuffleNetV2,
    "squeezenet1_0": torchvision.models.SqueezeNet,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Batches of 2 gain nothing from intra-op threads, and on a busy 2-core machine OpenMP threads
    # that contend with other processes made these tests 10-20x slower (measured).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _input(name: str, in_channels: int, batch: int = 2, max_side: int | None = None) -> torch.Tensor:
    side = min(model_spec(name).input_size, max_side or 1 << 16)
    return torch.randn(batch, in_channels, side, side, generator=torch.Generator().manual_seed(0))


def test_registry_holds_the_papers_zoo_with_family_and_input_size():
    for name, (family, size) in PAPER_ZOO.items():
        spec = model_spec(name)
        assert (spec.family, spec.input_size) == (family, size), name
    assert set(PAPER_ZOO) <= set(list_models())


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_channels", [1, 3])
def test_forward_backward_with_in_channels(name, in_channels):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_channels=in_channels).train()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == in_channels
    logits = model(_input(name, in_channels))
    assert logits.shape == (2, 7)
    F.cross_entropy(logits, torch.tensor([0, 6])).backward()
    assert first_conv.weight.grad is not None and torch.isfinite(first_conv.weight.grad).all()
    assert first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list_models())
def test_stem_keeps_feature_maps_large_enough_for_small_inputs(name):
    if name not in LAST_CONV_SIDE:
        pytest.skip(f"{name} is not one of the paper's models")
    model = create_model(name, num_classes=10, in_channels=3).eval()
    sides = []
    for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
        conv.register_forward_hook(lambda _m, _i, out: sides.append(out.shape[-1]))
    with torch.no_grad():
        model(_input(name, 3, batch=1))
    assert sides[-1] == LAST_CONV_SIDE[name]


@pytest.mark.parametrize("name", sorted(TORCHVISION_CLASS))
def test_tiny_imagenet_models_are_torchvision_models(name):
    assert isinstance(create_model(name, num_classes=200), TORCHVISION_CLASS[name])


@pytest.mark.parametrize("name", ["vgg8", "vgg13", "vgg11_bn"])
def test_vggs_have_global_pooling_and_one_linear_layer(name):
    model = create_model(name, num_classes=5)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1 and linears[0].in_features == 512 and linears[0].out_features == 5
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    expected_convs = {"vgg8": 5, "vgg13": 10, "vgg11_bn": 8}[name]
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == expected_convs


# Op types a plain Conv/Linear/BN/ReLU/pool/add/concat network may lower to (shape plumbing included:
# ShuffleNet's channel shuffle is a Reshape/Transpose; ResNet's option-A shortcut a Slice/Pad).
ALLOWED_ONNX_OPS = {
    "Conv", "Gemm", "BatchNormalization", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool",
    "ReduceMean", "Add", "Concat", "Flatten", "Reshape", "Transpose", "Slice", "Split", "Pad", "Identity",
    "Constant", "ConstantOfShape", "Shape", "Gather", "Unsqueeze", "Div", "Mul", "Cast",
}


@pytest.mark.parametrize("name", list_models())
def test_exports_to_onnx_opset13_and_matches_in_onnxruntime(name):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = create_model(name, num_classes=10, in_channels=1).eval()
    x = _input(name, 1)
    buffer = io.BytesIO()
    torch.onnx.export(
        model, (x,), buffer, opset_version=13, dynamo=False, input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    graph = onnx.load_from_string(buffer.getvalue())
    assert graph.opset_import[0].version == 13
    ops = {node.op_type for node in graph.graph.node}
    assert ops <= ALLOWED_ONNX_OPS, ops - ALLOWED_ONNX_OPS
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert abs(got - want).max() < 1e-4


def _prepare_qat():
    quant = pytest.importorskip("sqakd_edge.quant")
    if not hasattr(quant, "prepare_qat"):
        pytest.skip("sqakd_edge.quant.prepare_qat does not exist in this tree yet")
    return quant


def _qat_grid():
    """Every model x quantizer family x W2A2/W4A4/W8A8.

    The default run covers every model with every family at W4A4, and every model at W2A2 and W8A8
    with one family (rotating, so each family meets each bit width somewhere in the zoo); the rest of
    the cross product is marked slow (``pytest -m slow``): weight fake-quant of the 4-11 M-parameter
    models costs seconds per case on a 2-core CPU. Inputs are at most 32x32: every layer and
    quantizer code path is the same as at 64x64 (all models pool globally).
    """
    for i, name in enumerate(list_models()):
        for quantizer in QUANTIZERS:
            for bits in (2, 4, 8):
                fast = bits == 4 or quantizer == QUANTIZERS[(i + bits // 4) % len(QUANTIZERS)]
                marks = () if fast else (pytest.mark.slow,)
                yield pytest.param(name, quantizer, bits, marks=marks, id=f"{name}-{quantizer}-W{bits}A{bits}")


@pytest.mark.parametrize(("name", "quantizer", "bits"), list(_qat_grid()))
def test_prepare_qat_forward_backward(name, quantizer, bits):
    quant = _prepare_qat()
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3)
    student = quant.prepare_qat(model, QuantConfig(quantizer=quantizer, wbits=bits, abits=bits)).train()
    layers = dict(quant.iter_quant_layers(student))
    assert layers, f"prepare_qat quantized no layer of {name}"
    logits = student(_input(name, 3, max_side=32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([1, 2])).backward()
    for layer_name, layer in layers.items():
        grad = layer.weight.grad
        assert grad is not None and torch.isfinite(grad).all(), layer_name
    assert any(layer.weight.grad.abs().sum() > 0 for layer in layers.values())
