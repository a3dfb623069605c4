"""CIFAR-10/100 from tiny copies of the real python-pickle layout, and their bad variants."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from sqakd_edge.data import open_dataset
from sqakd_edge.data.cifar import CIFAR10, CIFAR100
from sqakd_edge.errors import DataError

PER_BATCH = 4


def _batch(n: int, label_key: bytes, num_classes: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    data[0, :1024], data[0, 1024:2048], data[0, 2048:] = 10, 20, 30  # image 0: R, G, B planes
    return {
        b"batch_label": b"training batch",
        label_key: [int(x) for x in rng.integers(0, num_classes, n)],
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def _dump(path: Path, obj: object, protocol: int = 2) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)  # protocol 2, bytes keys: like the original files


def write_cifar10(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        _dump(folder / f"data_batch_{i}", _batch(PER_BATCH, b"labels", 10, seed=i))
    _dump(folder / "test_batch", _batch(PER_BATCH + 1, b"labels", 10, seed=9))
    names = [n.encode() for n in ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return folder


def write_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n, seed in (("train", 6, 1), ("test", 3, 2)):
        batch = _batch(n, b"fine_labels", 100, seed)
        batch[b"coarse_labels"] = [0] * n
        _dump(folder / name, batch)
    _dump(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)]})
    return folder


def test_cifar10_train_and_test(tmp_path):
    folder = write_cifar10(tmp_path)
    train = open_dataset(f"cifar10:{tmp_path}", "train")
    test = open_dataset(f"cifar10:{folder}", "test")  # the batches folder itself works too
    assert (len(train.dataset), len(test.dataset)) == (5 * PER_BATCH, PER_BATCH + 1)
    assert (train.num_classes, train.in_channels, train.input_size, train.name) == (10, 3, 32, "cifar10")
    assert train.classes is not None and train.classes[:2] == ("plane", "car")
    image, label = train.dataset[0]
    assert image.shape == (3, 32, 32) and label == _batch(PER_BATCH, b"labels", 10, seed=1)[b"labels"][0]
    # Channel order R, G, B and the paper's normalisation.
    want = torch.tensor([(v / 255 - m) / s for v, m, s in zip((10, 20, 30), CIFAR10.mean, CIFAR10.std, strict=True)])
    torch.testing.assert_close(image[:, 5, 7], want)


def test_cifar10_batches_are_concatenated_in_order(tmp_path):
    write_cifar10(tmp_path)
    train = open_dataset(f"cifar10:{tmp_path}")
    labels = [train.dataset[i][1] for i in range(len(train.dataset))]
    assert labels == [lab for i in range(1, 6) for lab in _batch(PER_BATCH, b"labels", 10, seed=i)[b"labels"]]


def test_cifar_augmentation_and_resize(tmp_path):
    write_cifar10(tmp_path)
    assert open_dataset(f"cifar10:{tmp_path}", augment=True).dataset[1][0].shape == (3, 32, 32)
    assert open_dataset(f"cifar10:{tmp_path}", augment=True, input_size=64).dataset[1][0].shape == (3, 64, 64)


def test_str_keys_written_by_python3_also_load(tmp_path):
    folder = write_cifar10(tmp_path)
    batch = {k.decode(): v for k, v in _batch(PER_BATCH, b"labels", 10, seed=1).items()}
    _dump(folder / "data_batch_1", batch, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(open_dataset(f"cifar10:{tmp_path}").dataset) == 5 * PER_BATCH


def test_cifar100(tmp_path):
    write_cifar100(tmp_path)
    train = open_dataset(f"cifar100:{tmp_path}")
    test = open_dataset(str(tmp_path), "test")  # detected from the layout
    assert (train.name, test.name, train.num_classes, len(train.dataset), len(test.dataset)) == (
        "cifar100", "cifar100", 100, 6, 3,
    )
    assert train.mean == CIFAR100.mean and train.classes is not None and train.classes[5] == "c5"
    assert train.dataset[2][1] == _batch(6, b"fine_labels", 100, 1)[b"fine_labels"][2]


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=r"does not exist; expected cifar-10-batches-py/ .*data_batch_1"):
        open_dataset(f"cifar10:{tmp_path / 'nope'}")


def test_root_without_batches(tmp_path):
    with pytest.raises(DataError, match=r"is not a cifar100 root: no train in it or in cifar-100-python/"):
        open_dataset(f"cifar100:{tmp_path}")


def test_missing_batch_is_named(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"data_batch_3 is missing; expected cifar-10-batches-py/"):
        open_dataset(f"cifar10:{tmp_path}")


def test_malformed_pickle_is_named(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(b"this is not a pickle at all")
    with pytest.raises(DataError, match=r"test_batch is not a readable CIFAR batch"):
        open_dataset(f"cifar10:{tmp_path}", "test")


def test_truncated_pickle_is_named(tmp_path):
    folder = write_cifar10(tmp_path)
    path = folder / "data_batch_2"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=r"data_batch_2 is not a readable CIFAR batch"):
        open_dataset(f"cifar10:{tmp_path}")


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())  # harmless, but a global no CIFAR batch contains


def test_pickle_with_foreign_globals_is_refused_not_run(tmp_path):
    folder = write_cifar10(tmp_path)
    _dump(folder / "data_batch_1", {b"data": _Payload(), b"labels": []})
    with pytest.raises(DataError, match=r"data_batch_1 is not a readable CIFAR batch \(refusing to load"):
        open_dataset(f"cifar10:{tmp_path}")


def test_wrong_keys(tmp_path):
    folder = write_cifar10(tmp_path)
    _dump(folder / "data_batch_1", _batch(PER_BATCH, b"fine_labels", 10, 1))  # a CIFAR-100 key
    with pytest.raises(DataError, match=r"lacks the keys 'data' and 'labels'"):
        open_dataset(f"cifar10:{tmp_path}")


def test_wrong_image_shape(tmp_path):
    folder = write_cifar10(tmp_path)
    batch = _batch(PER_BATCH, b"labels", 10, 1)
    batch[b"data"] = batch[b"data"][:, :1000]
    _dump(folder / "data_batch_1", batch)
    with pytest.raises(DataError, match=r"expected uint8 \(N, 3072\)"):
        open_dataset(f"cifar10:{tmp_path}")


def test_label_out_of_range(tmp_path):
    folder = write_cifar10(tmp_path)
    batch = _batch(PER_BATCH, b"labels", 10, 1)
    batch[b"labels"][0] = 10
    _dump(folder / "data_batch_1", batch)
    with pytest.raises(DataError, match=r"labels must lie in 0..9"):
        open_dataset(f"cifar10:{tmp_path}")


def test_a_cifar_root_without_test_batch_says_so_in_the_training_log(tmp_path):
    from sqakd_edge.config import TrainConfig
    from sqakd_edge.models import create_model
    from sqakd_edge.train.api import open_run_data
    from sqakd_edge.train.loop import fit

    folder = write_cifar10(tmp_path)
    (folder / "test_batch").unlink()
    config = TrainConfig(method="fp", epochs=1, batch_size=4, val_fraction=0.2)
    data = open_run_data(f"cifar10:{tmp_path}", config)
    assert data.test is None and "test_batch" in data.meta["test_missing"]
    lines: list[str] = []
    fit(create_model("resnet20", num_classes=10, in_channels=3), data, config, tmp_path / "run",
        model_meta={"name": "resnet20", "num_classes": 10, "in_channels": 3, "input_size": 32}, progress=False,
        log=lines.append)
    assert any(line.startswith("note: no test split") and "test_batch" in line for line in lines), lines
