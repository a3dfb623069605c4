"""The main path: the user's own trained model and a folder of their unlabeled images, through the CLI.

A torchvision MobileNet-V3-Small with 10 classes is trained a few steps as "the user's" model (on colour
classes, so its predictions depend on the image) and saved as a plain ``state_dict``; SQAKD W4A4 distils it
from an unlabeled folder of RGB JPEGs of another size and aspect; export writes both graphs with parity; bench
times them. Also: the README's Python example runs as written, and the bad inputs of a user's model each give
one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from .cli_helpers import one_line_error, run

ROOT = Path(__file__).resolve().parents[1]
SIZE = 48


def colour_batch(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class is a colour (10 hues), with noise: a task any small CNN learns in a few steps."""
    y = torch.randint(0, 10, (n,), generator=gen)
    hues = torch.linspace(0, 1, 10)
    base = torch.stack([torch.sin(6.28 * (hues + k / 3)) * 0.5 + 0.5 for k in range(3)], 1)  # (10, 3)
    x = base[y][:, :, None, None] + 0.15 * torch.randn(n, 3, SIZE, SIZE, generator=gen)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return (x.clamp(0, 1) - mean[:, None, None]) / std[:, None, None], y


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """The user's weights (a state_dict) and their unlabeled photos (JPEG, 80x60, colour classes)."""
    root = tmp_path_factory.mktemp("user")
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(25):
        x, y = colour_batch(32, gen)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(model.state_dict(), root / "my_mobilenet.pt")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(96):
        hue = i % 10 / 10
        colour = np.array([np.sin(6.28 * (hue + k / 3)) * 0.5 + 0.5 for k in range(3)])
        pixels = np.clip(colour[None, None] + 0.15 * rng.standard_normal((60, 80, 3)), 0, 1)
        Image.fromarray((pixels * 255).astype(np.uint8)).save(photos / f"IMG_{i:04d}.jpg")
    return root


def test_users_torchvision_model_and_unlabeled_photos_end_to_end(user, tmp_path):
    run_dir = tmp_path / "run"
    r = run("train", "--model", "torchvision:mobilenet_v3_small", "--teacher", user / "my_mobilenet.pt", "--data",
            f"unlabeled:{user / 'photos'}", "--input-size", SIZE, "--wbits", "4", "--abits", "4", "--epochs", "1",
            "--batch-size", "16", "--out", run_dir, "--no-progress")
    assert r.exit_code == 0, r.output
    assert "10 classes, from the weights' classifier" in r.output
    assert f"input contract: 3x{SIZE}" in r.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model"]["source"] == "torchvision:mobilenet_v3_small"
    assert summary["model"]["input_shape"] == [3, SIZE, SIZE]
    assert summary["layers"]["quantized"] == 52 and set(summary["layers"]["kept_float"]) == {"features.0.0",
                                                                                            "classifier.3"}
    assert summary["best"]["metric"] == "val_loss"  # the held-out KL: no labels anywhere

    for target in ("tensorrt", "onnxruntime"):
        out = tmp_path / f"export-{target}"
        r = run("export", run_dir / "best.pt", "--int8", "--target", target, "--out", out, "--threads", "1")
        assert r.exit_code == 0, r.output
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["input"]["shape"] == ["batch", 3, SIZE, SIZE]
        assert manifest["input"]["mean"] == [0.485, 0.456, 0.406]
        assert manifest["data"]["spec"] == f"unlabeled:{user / 'photos'}"  # parity on the user's photos
        assert manifest["parity"]["int8"]["off"]["top1_agreement"] >= 0.999, r.output
    r = run("bench", tmp_path / "export-onnxruntime", "--batch", "1", "--iters", "5", "--warmup", "1", "--threads", "1",
            "--no-plot", "--quiet")
    assert r.exit_code == 0, r.output
    results = json.loads((tmp_path / "export-onnxruntime" / "bench" / "results.json").read_text())
    assert {m["name"] for m in results["results"]} >= {"fp32", "int8"}


def test_bad_inputs_of_a_users_model(user, tmp_path):
    photos = f"unlabeled:{user / 'photos'}"
    weights = user / "my_mobilenet.pt"
    base = ["train", "--data", photos, "--input-size", SIZE, "--out", tmp_path / "x", "--epochs", "1",
            "--batch-size", "16", "--no-progress"]
    one_line_error(run(*base, "--model", "torchvision:mobilenet_v3_smal", "--teacher", weights),
                   "torchvision has no classification model 'mobilenet_v3_smal'", "mobilenet_v3_small")
    one_line_error(run(*base, "--model", "torchvision:resnet18", "--teacher", weights), "do not fit")
    one_line_error(run(*base, "--teacher", weights), "not a sqakd-edge checkpoint", "--model SOURCE")
    one_line_error(run(*base, "--model", "torchvision:mobilenet_v3_small"), "exactly one of --fp")
    whole = tmp_path / "whole.pt"
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=10), whole)
    one_line_error(run(*base, "--model", "torchvision:mobilenet_v3_small", "--teacher", whole),
                   "torch.save(model.state_dict()", "do not load it with weights_only=False")
    builder = tmp_path / "nets.py"
    builder.write_text("import torch\n\ndef empty():\n    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), "
                       "torch.nn.Flatten())\n\n"
                       "def raises():\n    raise ValueError('bad config')\n")
    one_line_error(run(*base, "--model", f"file:{builder}:empty", "--random-teacher"),
                   "no Conv2d or Linear layer to quantize")
    one_line_error(run(*base, "--model", f"file:{builder}:raises", "--random-teacher"), "ValueError: bad config")
    one_line_error(run(*base, "--model", "torchvision:maxvit_t", "--random-teacher"), f"rejects input 3x{SIZE}")
    assert not (tmp_path / "x").exists()  # nothing written by any of them


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- python-example -->\n```python\n(.*?)```", text, re.S)
    assert block, "README has no python example block"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"print": lambda *a, **k: None}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["parity"]["int8"]["off"]["top1_agreement"] >= 0.999
    assert manifest["quant"]["wbits"] == 8
