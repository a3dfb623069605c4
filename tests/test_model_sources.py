"""Model sources (registered, torchvision:, file:, module:), the user's weights, and the input contract."""

from __future__ import annotations

import sys

import pytest
import torch
import torchvision
from torch import nn

from sqakd_edge.config import IMAGENET_MEAN, InputContract, QuantConfig
from sqakd_edge.errors import CheckpointError, ConfigError
from sqakd_edge.models.resolve import ContractRequest, rebuild_model, resolve_model
from sqakd_edge.models.sources import adapt_input_channels, build, parse_model_source
from sqakd_edge.models.weights import extract_state_dict, read_weights_file
from sqakd_edge.quant import plan_quantization

MY_NET = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, padding=1, groups=8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def build(num_classes=10):
    return Net(num_classes)


def broken():
    raise RuntimeError("no GPU here")


def not_a_module():
    return 42
'''


def test_parse_sources():
    assert parse_model_source("resnet20").kind == "registered"
    src = parse_model_source("torchvision:vit_b_16?image_size=64&dropout=0.1")
    assert (src.kind, src.name, src.kwargs) == ("torchvision", "vit_b_16", {"image_size": 64, "dropout": 0.1})
    assert parse_model_source(src.spec) == src  # the recorded spec parses back to the same source
    mod = parse_model_source("module:torchvision.models:resnet18?num_classes=7")
    assert (mod.kind, mod.location, mod.name, mod.kwargs) == ("module", "torchvision.models", "resnet18",
                                                            {"num_classes": 7})


def test_unknown_names_list_close_matches():
    with pytest.raises(ConfigError, match="close matches: .*resnet50"):
        parse_model_source("torchvision:resnet05")
    with pytest.raises(ConfigError, match="did you mean .*resnet20"):
        parse_model_source("resnet2O")
    with pytest.raises(ConfigError, match="unknown model source kind 'timm'"):
        parse_model_source("timm:resnet18")
    with pytest.raises(ConfigError, match="not key=value"):
        parse_model_source("torchvision:resnet18?oops")


def test_every_torchvision_classifier_is_a_source():
    names = torchvision.models.list_models(module=torchvision.models)
    assert len(names) == 80
    for name in names:
        assert parse_model_source(f"torchvision:{name}").name == name


@pytest.fixture
def my_net(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(MY_NET)
    return path


def test_file_and_module_builders(my_net, monkeypatch):
    built = build(parse_model_source(f"file:{my_net}:build"), num_classes=5, in_channels=3)
    assert built.model(torch.zeros(2, 3, 16, 16)).shape == (2, 5)  # num_classes reached the builder
    monkeypatch.syspath_prepend(str(my_net.parent))
    built = build(parse_model_source("module:my_net:build"), num_classes=4, in_channels=3)
    assert built.model(torch.zeros(1, 3, 16, 16)).shape == (1, 4)
    sys.modules.pop("my_net", None)


def test_builder_failures_are_one_line(my_net, tmp_path):
    cases = [(f"file:{my_net}:broken", "failed: RuntimeError: no GPU here"),
             (f"file:{my_net}:not_a_module", "returned int, not a torch.nn.Module"),
             (f"file:{my_net}:bulid", "has no function 'bulid'; did you mean build"),
             (f"file:{tmp_path / 'missing.py'}:build", "does not exist"),
             ("module:no_such_package_xyz:build", "cannot import module 'no_such_package_xyz'")]
    bad = tmp_path / "bad.py"
    bad.write_text("import no_such_module_xyz\n")
    cases.append((f"file:{bad}:build", "importing model file .* failed: ModuleNotFoundError"))
    for source, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            build(parse_model_source(source), num_classes=10, in_channels=3)
        assert "\n" not in str(info.value)


def test_weights_as_users_keep_them(tmp_path):
    model = torchvision.models.resnet18(num_classes=7)
    state = model.state_dict()
    plain, nested, ddp = tmp_path / "plain.pt", tmp_path / "nested.pt", tmp_path / "ddp.pt"
    torch.save(state, plain)
    torch.save({"epoch": 3, "model_state_dict": state, "optimizer": {"lr": 0.1}}, nested)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, ddp)
    for path in (plain, nested, ddp):
        sd = extract_state_dict(read_weights_file(path), path)
        assert set(sd) == set(state) and torch.equal(sd["fc.weight"], state["fc.weight"])


def test_unsafe_weights_are_refused_without_running_them(tmp_path):
    model = torchvision.models.resnet18(num_classes=7)
    whole, script = tmp_path / "whole.pt", tmp_path / "script.pt"
    torch.save(model, whole)
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), script)
    with pytest.raises(CheckpointError, match="object of class torchvision.models.resnet.ResNet.*state_dict") as info:
        read_weights_file(whole)
    assert "do not load it with weights_only=False" in str(info.value)
    with pytest.raises(CheckpointError, match="TorchScript file.*state_dict"):
        read_weights_file(script)


def test_classes_come_from_the_weights_and_mismatches_are_named(tmp_path):
    weights = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18(num_classes=7).state_dict(), weights)
    resolved = resolve_model("torchvision:resnet18", ContractRequest(size=(64, 64)), weights=weights,
                             log=lambda m: None)
    assert resolved.meta["num_classes"] == 7 and resolved.contract.mean == IMAGENET_MEAN
    with pytest.raises(CheckpointError, match=r"2 of another shape \(fc.weight .*pass --num-classes"):
        resolve_model("torchvision:resnet18", ContractRequest(num_classes=10, size=(64, 64)), weights=weights,
                      log=lambda m: None)
    with pytest.raises(CheckpointError, match="missing .*unexpected"):
        resolve_model("torchvision:mobilenet_v2", ContractRequest(size=(64, 64)), weights=weights, log=lambda m: None)


def test_input_the_model_cannot_take_is_said_with_its_size():
    with pytest.raises(ConfigError, match="rejects input 3x224x160"):
        resolve_model("torchvision:maxvit_t", ContractRequest(num_classes=10, size=(224, 160)), log=lambda m: None)


def test_gray_input_adaptation_keeps_what_the_weights_compute():
    model = torchvision.models.resnet18(num_classes=5).eval()
    gray = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        rgb_out = model(gray.expand(-1, 3, -1, -1))
        assert adapt_input_channels(model, 1) == "conv1"
        assert torch.allclose(model(gray), rgb_out, atol=1e-5)  # summed kernels on gray == RGB kernels on gray x3


def test_rebuild_from_the_recorded_block(tmp_path):
    weights = tmp_path / "m.pt"
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=4).state_dict(), weights)
    resolved = resolve_model("torchvision:mobilenet_v3_small", ContractRequest(size=(96, 64), in_channels=1),
                             weights=weights, log=lambda m: None)
    assert resolved.meta["input_shape"] == [1, 96, 64] and resolved.meta["num_classes"] == 4
    again = rebuild_model(resolved.meta)
    again.load_state_dict(resolved.model.state_dict())
    x = torch.rand(2, 1, 96, 64)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), resolved.model(x))


def test_layer_policy_follows_call_order_and_reports_direct_weight_reads():
    class Reordered(nn.Module):  # defines the head first, calls it last
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(8, 3)
            self.stem = nn.Conv2d(3, 8, 3)
            self.mid = nn.Conv2d(8, 8, 1)
            self.unused_linear = nn.Linear(8, 8)

        def forward(self, x):
            x = self.mid(self.stem(x)).mean((2, 3))
            x = nn.functional.linear(x, self.unused_linear.weight)  # read, not called
            return self.head(x)

    plan = plan_quantization(Reordered(), QuantConfig())
    assert plan.quantized == ("mid",)
    assert "first" in plan.kept_float["stem"] and "last" in plan.kept_float["head"]
    assert "reads its weights directly" in plan.kept_float["unused_linear"]


def test_untraceable_models_are_refused_naming_where():
    class Gate(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.gate = Gate()

        def forward(self, x):
            return self.gate(self.conv(x)).mean((2, 3))

    with pytest.raises(ConfigError, match="stopped in the forward of gate \\(Gate\\)"):
        plan_quantization(Net(), QuantConfig())


def test_a_contract_needs_one_mean_and_std_per_channel():  # the flags' parsers: tests/test_cli_config.py
    with pytest.raises(ConfigError, match="2 value.*3 channel"):
        InputContract(3, 32, 32, (0.5, 0.5), (0.2, 0.2, 0.2))
