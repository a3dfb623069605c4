"""Fashion-MNIST IDX files (.gz and raw) written in the real format, and their bad variants."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from sqakd_edge.data import open_dataset
from sqakd_edge.errors import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding: two zero bytes, type 0x08 (ubyte), ndim, big-endian int32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(root: Path, n_train: int = 20, n_test: int = 10, compress: bool = True, side: int = 28) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    for name, array in arrays.items():
        data = idx_bytes(array)
        if compress:
            (root / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_idx_round_trip(tmp_path, compress):
    arrays = write_idx_set(tmp_path, compress=compress)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        info = open_dataset(f"fashion-mnist:{tmp_path}", split)
        images, labels = arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"]
        assert len(info.dataset) == len(images) and info.num_classes == 10 and info.in_channels == 1
        image, label = info.dataset[4]
        np.testing.assert_allclose(image[0].numpy() * info.std[0] + info.mean[0], images[4] / 255.0, atol=1e-5)
        assert label == labels[4]
    train_pixels = arrays["train-images-idx3-ubyte"] / 255.0
    assert info.mean[0] == pytest.approx(train_pixels.mean(), abs=1e-4)


def test_torchvision_layout_and_detection_of_a_bare_path(tmp_path):
    write_idx_set(tmp_path / "FashionMNIST" / "raw")
    assert len(open_dataset(f"fashion-mnist:{tmp_path}").dataset) == 20
    info = open_dataset(str(tmp_path), "test")
    assert info.name == "fashion-mnist" and len(info.dataset) == 10


def test_missing_folder_names_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"no Fashion-MNIST IDX files in .*train-images-idx3-ubyte\.gz"):
        open_dataset(f"fashion-mnist:{tmp_path}")


def test_missing_test_files(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    assert len(open_dataset(f"fashion-mnist:{tmp_path}", "train").dataset) == 20
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        open_dataset(f"fashion-mnist:{tmp_path}", "test")


def test_truncated_file_is_named(tmp_path):
    write_idx_set(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=rf"{path}.*truncated or corrupt"):
        open_dataset(f"fashion-mnist:{tmp_path}")


def test_truncated_gzip_is_named(tmp_path):
    write_idx_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=rf"cannot read IDX file {path}"):
        open_dataset(f"fashion-mnist:{tmp_path}")


def test_bad_magic_number(tmp_path):
    write_idx_set(tmp_path, compress=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x01" + path.read_bytes()[4:])  # type 0x0D (float), not ubyte
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        open_dataset(f"fashion-mnist:{tmp_path}")


def test_label_count_mismatch(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(7, np.uint8))))
    with pytest.raises(DataError, match="labels for 20 images"):
        open_dataset(f"fashion-mnist:{tmp_path}")


def test_label_out_of_range(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.full(20, 12, np.uint8))))
    with pytest.raises(DataError, match="label 12"):
        open_dataset(f"fashion-mnist:{tmp_path}")


def test_a_gzip_bomb_is_not_decompressed_past_what_its_header_declares(tmp_path):
    import gzip
    import struct

    from sqakd_edge.data.fashion_mnist import read_idx
    from sqakd_edge.errors import DataError

    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb") as fh:  # declares 4 billion images of 28x28
        fh.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 4_000_000_000, 28, 28) + b"\0" * (1 << 20))
    with pytest.raises(DataError, match="declares .* data bytes, more than"):
        read_idx(bomb)
    longer = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(longer, "wb") as fh:  # 10 labels declared, a megabyte more behind them
        fh.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\1" * (1 << 20))
    with pytest.raises(DataError, match="holds 11 data bytes but its header"):
        read_idx(longer)
