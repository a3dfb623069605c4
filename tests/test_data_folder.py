"""Image folders: labelled by class subfolders or not, split or pooled, and their bad variants."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sqakd_edge.data import open_dataset
from sqakd_edge.errors import DataError


def _image(path: Path, value: int | tuple[int, int, int] = 128, size: tuple[int, int] = (32, 32), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "RGB" or isinstance(value, int) else value[0]
    Image.new(mode, size, colour).save(path)
    return path


def _class_folder(root: Path, classes=("cat", "dog"), per_class: int = 12) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            _image(root / name / f"{i:03d}.png", (40 * c, 100, 200))
    return root


def _paths(info) -> set[str]:
    return {p for p, _ in info.dataset.samples}


def test_labelled_folder_with_every_tenth_image_held_out(tmp_path):
    _class_folder(tmp_path)
    train = open_dataset(f"folder:{tmp_path}", "train")
    test = open_dataset(f"folder:{tmp_path}", "test")
    assert train.labelled and train.classes == ("cat", "dog") and train.num_classes == 2
    assert (len(train.dataset), len(test.dataset)) == (22, 2)
    assert not _paths(train) & _paths(test)
    assert sorted(Path(p).name for p in _paths(test)) == ["009.png", "009.png"]
    assert {label for _, label in test.dataset.samples} == {0, 1}
    image, label = train.dataset[0]
    assert image.shape == (3, 32, 32) and label == 0 and train.name == f"folder-{tmp_path.name}"


def test_unlabeled_flat_folder(tmp_path):
    for i in range(20):
        _image(tmp_path / f"img{i:02d}.jpg", (i * 10, 0, 0))
    info = open_dataset(str(tmp_path))  # a bare path is a folder when no other layout matches
    assert not info.labelled and info.num_classes is None and info.classes is None
    assert len(info.dataset) == 18 and {info.dataset[i][1] for i in range(18)} == {-1}
    assert len(open_dataset(str(tmp_path), "test").dataset) == 2


def test_nested_folder_without_class_structure_is_unlabeled(tmp_path):
    _image(tmp_path / "top.png")
    for i in range(12):
        _image(tmp_path / "2024" / "05" / f"{i}.png")
    info = open_dataset(f"folder:{tmp_path}")
    assert not info.labelled and len(info.dataset) + len(open_dataset(f"folder:{tmp_path}", "test").dataset) == 13


def test_single_subfolder_is_unlabeled(tmp_path):
    for i in range(10):
        _image(tmp_path / "only" / f"{i}.png")
    assert not open_dataset(f"folder:{tmp_path}").labelled


def test_unlabeled_spec_ignores_class_folders(tmp_path):
    _class_folder(tmp_path)
    info = open_dataset(f"unlabeled:{tmp_path}")
    assert not info.labelled and len(info.dataset) == 22 and info.dataset[0][1] == -1


def test_train_and_test_subfolders(tmp_path):
    _class_folder(tmp_path / "train", per_class=3)
    _class_folder(tmp_path / "val", classes=("dog",), per_class=2)  # val/ is an alias of test/
    train = open_dataset(f"folder:{tmp_path}", "train")
    test = open_dataset(f"folder:{tmp_path}", "test")
    assert (len(train.dataset), len(test.dataset)) == (6, 2)  # nothing held out
    assert {label for _, label in test.dataset.samples} == {train.classes.index("dog")}


def test_test_subfolder_with_unknown_class(tmp_path):
    _class_folder(tmp_path / "train", per_class=2)
    _class_folder(tmp_path / "test", classes=("cat", "cow"), per_class=1)
    with pytest.raises(DataError, match=r"holds classes \['cow'\] that the training folder lacks"):
        open_dataset(f"folder:{tmp_path}", "test")


@pytest.mark.parametrize("content", ["nothing", "not images"])
def test_empty_folder(tmp_path, content):
    if content == "not images":
        (tmp_path / "notes.txt").write_text("hello")
        (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match=rf"no images found under {tmp_path} \(looked for .*\.jpg"):
        open_dataset(f"folder:{tmp_path}")


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(DataError, match="image folder .* does not exist"):
        open_dataset(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DataError, match="is not a folder"):
        open_dataset(f"folder:{tmp_path / 'file.png'}")


def test_too_few_images_for_a_held_out_test_split(tmp_path):
    for i in range(5):
        _image(tmp_path / f"{i}.png")
    assert len(open_dataset(f"folder:{tmp_path}").dataset) == 5
    with pytest.raises(DataError, match=r"too few images \(5\) to hold out a test split"):
        open_dataset(f"folder:{tmp_path}", "test")


def test_corrupt_image_fails_naming_the_file(tmp_path):
    _class_folder(tmp_path, per_class=4)
    bad = tmp_path / "dog" / "002.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=rf"cannot read image {bad}: .*skip_corrupt=True \(CLI: --skip-corrupt\)"):
        info = open_dataset(f"folder:{tmp_path}")
        for i in range(len(info.dataset)):
            info.dataset[i]


def test_corrupt_images_skipped_with_one_counted_warning(tmp_path):
    _class_folder(tmp_path, per_class=4)
    (tmp_path / "dog" / "002.png").write_bytes(b"garbage")
    (tmp_path / "cat" / "000.png").write_bytes(b"")  # the first image: channels come from the next one
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = open_dataset(f"folder:{tmp_path}", skip_corrupt=True)
    messages = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert messages == [f"skipped 2 unreadable image(s) of 8 under {tmp_path}: 000.png, 002.png"]
    assert len(info.dataset) == 6 and all(info.dataset[i][0].shape == (3, 32, 32) for i in range(6))


def test_big_images_are_resized_default_size_capped_at_64(tmp_path):
    for i in range(3):
        _image(tmp_path / f"photo{i}.jpg", (i * 60, 50, 50), size=(300 + 10 * i, 200))
    info = open_dataset(f"folder:{tmp_path}", augment=True)
    assert info.input_size == 64 and info.dataset[0][0].shape == (3, 64, 64)
    sized = open_dataset(f"folder:{tmp_path}", input_size=48)
    batch, labels = next(iter(DataLoader(sized.dataset, batch_size=3)))
    assert batch.shape == (3, 3, 48, 48) and labels.tolist() == [-1, -1, -1]


def test_grayscale_folder_has_one_channel_and_its_own_size(tmp_path):
    for i in range(4):
        _image(tmp_path / f"g{i}.png", 10 * i, size=(28, 28), mode="L")
    _image(tmp_path / "z_colour.png", (255, 0, 0), size=(40, 40))  # converted to the folder's mode
    info = open_dataset(f"folder:{tmp_path}")
    assert (info.in_channels, info.input_size) == (1, 28)
    assert all(info.dataset[i][0].shape == (1, 28, 28) for i in range(len(info.dataset)))


def test_statistics_come_from_the_training_images(tmp_path):
    for i in range(10):
        _image(tmp_path / f"{i}.png", 50 if i % 2 else 150, mode="L")
    info = open_dataset(f"folder:{tmp_path}", "test")
    pixels = np.array([50 if i % 2 else 150 for i in range(9)]) / 255  # the 10th is the test image
    assert info.mean[0] == pytest.approx(pixels.mean(), abs=1e-4)
    assert info.std[0] == pytest.approx(pixels.std(), abs=1e-4)
    train = open_dataset(f"folder:{tmp_path}")
    value = train.dataset[0][0][0, 0, 0]
    assert float(value) == pytest.approx((150 / 255 - info.mean[0]) / info.std[0], abs=1e-3)


def test_constant_images_do_not_divide_by_zero(tmp_path):
    for i in range(3):
        _image(tmp_path / f"{i}.png", 0, mode="L")
    info = open_dataset(f"folder:{tmp_path}")
    assert info.std[0] > 0 and torch.isfinite(info.dataset[0][0]).all()
