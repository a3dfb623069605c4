"""Tiny-ImageNet from a tiny copy of the real ``tiny-imagenet-200`` layout, and its bad variants."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sqakd_edge.data import open_dataset
from sqakd_edge.errors import DataError

WNIDS = ("n02124075", "n01443537", "n09246464")  # deliberately unsorted in wnids.txt
COLOURS = {"n01443537": (200, 30, 30), "n02124075": (30, 200, 30), "n09246464": (30, 30, 200)}
PER_CLASS = 3
VAL = [
    ("val_0.JPEG", "n09246464"), ("val_1.JPEG", "n01443537"), ("val_2.JPEG", "n02124075"), ("val_3.JPEG", "n09246464"),
]


def _jpeg(path: Path, colour: tuple[int, int, int], mode: str = "RGB") -> None:
    image = Image.new("RGB", (64, 64), colour)
    (image.convert("L") if mode == "L" else image).save(path, "JPEG", quality=95)


def write_tiny_imagenet(root: Path) -> Path:
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "test" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (base / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in WNIDS))
    for wnid in WNIDS:
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for i in range(PER_CLASS):
            _jpeg(folder / f"{wnid}_{i}.JPEG", COLOURS[wnid])
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text(
            "".join(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(PER_CLASS))
        )
    lines = []
    for name, wnid in VAL:
        _jpeg(base / "val" / "images" / name, COLOURS[wnid])
        lines.append(f"{name}\t{wnid}\t0\t0\t63\t63\n")
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    _jpeg(base / "test" / "images" / "test_0.JPEG", (0, 0, 0))
    return base


def _colour_of(image: torch.Tensor, mean, std) -> np.ndarray:
    pixel = image[:, 32, 32].numpy() * np.array(std) + np.array(mean)
    return np.round(pixel * 255)


def test_train_split_labels_follow_sorted_wnids(tmp_path):
    write_tiny_imagenet(tmp_path)
    info = open_dataset(f"tiny-imagenet:{tmp_path}", "train")
    assert info.classes == tuple(sorted(WNIDS)) and info.num_classes == 3
    assert (info.in_channels, info.input_size, len(info.dataset), info.name) == (3, 64, 9, "tiny-imagenet")
    for i in range(len(info.dataset)):
        image, label = info.dataset[i]
        assert image.shape == (3, 64, 64)
        np.testing.assert_allclose(_colour_of(image, info.mean, info.std), COLOURS[info.classes[label]], atol=3)


def test_val_split_is_labelled_by_annotations(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    info = open_dataset(str(base), "val")  # bare path, detected
    assert info.name == "tiny-imagenet" and len(info.dataset) == len(VAL)
    labels = [info.dataset[i][1] for i in range(len(VAL))]
    assert [info.classes[label] for label in labels] == [wnid for _, wnid in VAL]


def test_augmentation_and_input_size(tmp_path):
    write_tiny_imagenet(tmp_path)
    assert open_dataset(f"tiny-imagenet:{tmp_path}", augment=True).dataset[0][0].shape == (3, 64, 64)
    info = open_dataset(f"tiny-imagenet:{tmp_path}", "test", augment=False, input_size=32)
    assert info.input_size == 32 and info.dataset[0][0].shape == (3, 32, 32)


def test_grayscale_jpeg_becomes_three_channels(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    _jpeg(base / "train" / WNIDS[0] / "images" / f"{WNIDS[0]}_0.JPEG", (90, 90, 90), mode="L")
    info = open_dataset(f"tiny-imagenet:{tmp_path}")
    assert all(info.dataset[i][0].shape == (3, 64, 64) for i in range(len(info.dataset)))


def test_missing_val_annotations(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    (base / "val" / "val_annotations.txt").unlink()
    for split in ("train", "test"):
        with pytest.raises(DataError, match=r"lacks val/val_annotations\.txt, which labels the validation images"):
            open_dataset(f"tiny-imagenet:{tmp_path}", split)


def test_missing_root_and_not_a_root(tmp_path):
    with pytest.raises(DataError, match=r"does not exist; expected tiny-imagenet-200/ holding wnids\.txt"):
        open_dataset(f"tiny-imagenet:{tmp_path / 'nope'}")
    with pytest.raises(DataError, match=r"is not a Tiny-ImageNet root: no wnids\.txt"):
        open_dataset(f"tiny-imagenet:{tmp_path}")


def test_missing_class_folder(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    (base / "wnids.txt").write_text("\n".join(WNIDS + ("n99999999",)))
    with pytest.raises(DataError, match=r"lacks train/n99999999/images/"):
        open_dataset(f"tiny-imagenet:{tmp_path}")


def test_annotation_with_unknown_wnid_names_the_line(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    with (base / "val" / "val_annotations.txt").open("a") as fh:
        fh.write("val_9.JPEG\tn00000000\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match=r"val_annotations\.txt line 5 "):
        open_dataset(f"tiny-imagenet:{tmp_path}", "test")


def test_corrupt_image_fails_naming_the_file(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    bad = base / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_1.JPEG"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated JPEG
    info = open_dataset(f"tiny-imagenet:{tmp_path}")
    index = [Path(p) for p, _ in info.dataset.samples].index(bad)
    with pytest.raises(DataError, match=rf"cannot read image {bad}: .*skip_corrupt=True"):
        info.dataset[index]


def test_corrupt_images_are_skipped_with_one_counted_warning(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    (base / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_1.JPEG").write_bytes(b"not a jpeg")
    (base / "train" / WNIDS[2] / "images" / f"{WNIDS[2]}_0.JPEG").write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = open_dataset(f"tiny-imagenet:{tmp_path}", skip_corrupt=True)
    messages = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith("skipped 2 unreadable image(s) of 9 under ")
    assert len(info.dataset) == 7
    assert all(info.dataset[i][0].shape == (3, 64, 64) for i in range(7))
