"""Dataset specs, layout detection, and what every DatasetInfo promises."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sqakd_edge.data import DatasetInfo, list_dataset_kinds, open_dataset
from sqakd_edge.data.spec import detect_kind, parse_spec
from sqakd_edge.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


def test_kinds():
    assert list_dataset_kinds() == [
        "embedded", "fashion-mnist", "cifar10", "cifar100", "tiny-imagenet", "folder", "unlabeled",
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("embedded", ("embedded", None)),
        ("fashion-mnist", ("fashion-mnist", None)),
        ("cifar10:/data/c10", ("cifar10", Path("/data/c10"))),
        ("tiny-imagenet:~/t", ("tiny-imagenet", Path("~/t").expanduser())),
        ("folder:rel/dir", ("folder", Path("rel/dir"))),
        ("/some/path", (None, Path("/some/path"))),
        ("dir/with:colon", (None, Path("dir/with:colon"))),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cifar:/data", r"unknown dataset kind 'cifar'; choose one of: embedded, fashion-mnist\[:PATH\], cifar10:PATH"),
        ("embedded:/x", r"the dataset 'embedded' takes no path"),
        ("cifar100:", r"the dataset 'cifar100' needs a path: cifar100:PATH"),
        ("", r"empty dataset spec"),
        ("/does/not/exist", r"dataset path /does/not/exist does not exist; give one of: embedded"),
    ],
)
def test_bad_specs_are_one_line_data_errors(spec, message):
    with pytest.raises(DataError, match=message) as caught:
        open_dataset(spec)
    assert "\n" not in str(caught.value)


def test_a_file_is_not_a_dataset(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="is not a folder"):
        open_dataset(str(path))


def test_detect_kind(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert detect_kind(tmp_path / "cifar-10-batches-py") == "folder"  # an empty batches folder is no CIFAR
    assert detect_kind(tmp_path) == "cifar10"
    (tmp_path / "c100").mkdir()
    (tmp_path / "c100" / "cifar-100-python").mkdir()
    assert detect_kind(tmp_path / "c100") == "cifar100"
    (tmp_path / "tin").mkdir()
    (tmp_path / "tin" / "wnids.txt").write_text("n1\n")
    assert detect_kind(tmp_path / "tin") == "tiny-imagenet"


@pytest.mark.parametrize("split", ["training", "validation", ""])
def test_bad_split(split):
    with pytest.raises(ConfigError, match="choose train or test"):
        open_dataset("embedded", split)


@pytest.mark.parametrize("size", [0, 4, 4096, True])
def test_bad_input_size(size):
    with pytest.raises(ConfigError, match="input_size must be an integer from 8 to 1024"):
        open_dataset("embedded", input_size=size)


def test_info_is_frozen_and_complete():
    info = open_dataset("embedded", "test")
    assert isinstance(info, DatasetInfo)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "x"  # type: ignore[misc]
    assert len(info.mean) == len(info.std) == info.in_channels
    assert info.num_classes == len(info.classes)


def test_dataloader_with_worker_processes(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.new("RGB", (40, 30), (i * 20, 0, 0)).save(tmp_path / c / f"{i}.png")
    info = open_dataset(f"folder:{tmp_path}", augment=True)
    loader = DataLoader(info.dataset, batch_size=6, num_workers=2, shuffle=True)
    batches = list(loader)
    assert sum(len(labels) for _, labels in batches) == 18
    images, labels = batches[0]
    assert images.shape == (6, 3, 30, 30) and images.dtype == torch.float32 and labels.dtype == torch.int64


def test_import_stays_light():
    code = (
        "import sys, sqakd_edge.data; "
        "bad = [m for m in ('onnx', 'onnxruntime', 'tensorrt', 'pycuda', 'matplotlib') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
