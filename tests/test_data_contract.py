"""Images converted to a model's input contract, 16-bit images by their range, and links in image folders."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from sqakd_edge.config import IMAGENET_MEAN, IMAGENET_STD, InputContract
from sqakd_edge.data import open_dataset
from sqakd_edge.data.images import read_image

RGB = InputContract(3, 64, 48, IMAGENET_MEAN, IMAGENET_STD)


@pytest.fixture
def mixed_folder(tmp_path):
    """One image of every mode a camera roll holds, each of another size."""
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8)).save(root / "a.jpg")
    Image.fromarray((rng.random((50, 70)) * 255).astype(np.uint8), "L").save(root / "b.png")
    Image.fromarray((rng.random((40, 40, 4)) * 255).astype(np.uint8), "RGBA").save(root / "c.png")
    Image.fromarray((rng.random((30, 90, 3)) * 255).astype(np.uint8)).convert("P").save(root / "d.gif")
    gradient = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    Image.fromarray(gradient).save(root / "e.png")  # mode I;16
    for i in range(5):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(root / f"z{i}.png")
    return root


def test_folder_images_of_any_mode_and_size_meet_the_contract(mixed_folder):
    for augment in (False, True):
        info = open_dataset(f"unlabeled:{mixed_folder}", "train", augment=augment, contract=RGB)
        assert (info.in_channels, info.mean, info.std) == (3, IMAGENET_MEAN, IMAGENET_STD)
        for i in range(len(info.dataset)):
            image, label = info.dataset[i]
            assert image.shape == (3, 64, 48) and image.dtype == torch.float32 and label == -1
            pixels = image * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
            assert -1e-4 <= float(pixels.min()) and float(pixels.max()) <= 1 + 1e-4
    gray = open_dataset(f"unlabeled:{mixed_folder}", "train", contract=InputContract(1, 32, 32, (0.5,), (0.25,)))
    assert gray.dataset[0][0].shape == (1, 32, 32)


def test_16_bit_images_are_scaled_by_their_range_not_clipped(mixed_folder):
    pixels = read_image(mixed_folder / "e.png", "L")
    # a 0..65535 ramp: about half the pixels below mid-grey (clipping at 255 made 99 % of them white)
    assert pixels.min() == 0 and pixels.max() == 255
    assert 0.45 < float((pixels < 128).mean()) < 0.55
    rgb = read_image(mixed_folder / "e.png", "RGB")
    assert rgb.shape == (3, 64, 64) and np.array_equal(rgb[0], rgb[2])


def test_in_memory_data_adapted_to_a_contract():
    native = open_dataset("embedded", "test")
    contract = InputContract(3, 32, 40, IMAGENET_MEAN, IMAGENET_STD)
    adapted = open_dataset("embedded", "test", contract=contract)
    image, label = adapted.dataset[3]
    assert image.shape == (3, 32, 40) and label == native.dataset[3][1]
    pixels = image * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    assert torch.allclose(pixels[0], pixels[1], atol=1e-5)  # gray replicated to RGB
    raw = native.dataset[3][0] * native.std[0] + native.mean[0]
    resized = torch.nn.functional.interpolate(raw[None], size=(32, 40), mode="bilinear", antialias=True)[0]
    assert torch.allclose(pixels[:1], resized.clamp(0, 1), atol=1e-4)
    same = open_dataset("embedded", "test", contract=InputContract(1, 28, 28, native.mean, native.std))
    assert same.dataset is native.dataset or torch.equal(same.dataset[0][0], native.dataset[0][0])


def test_links_out_of_the_folder_and_loops_are_skipped_and_counted(tmp_path):
    root = tmp_path / "data"
    outside = tmp_path / "elsewhere"
    for d in (root / "cat", root / "dog", outside):
        d.mkdir(parents=True)
    for d, n in ((root / "cat", 3), (root / "dog", 3), (outside, 5)):
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 30 * i, np.uint8)).save(d / f"{d.name}{i}.png")
    os.symlink(root, root / "cat" / "loop")  # would read forever, repeating every image
    os.symlink("..", root / "dog" / "up")  # would label the cats as dogs
    os.symlink(outside, root / "cat" / "away")  # out of the root
    os.symlink("/etc/passwd", root / "dog" / "passwd.png")  # a file link out of the root
    start = time.perf_counter()
    with pytest.warns(UserWarning, match=r"skipped 2 link\(s\) leading out of the folder .* 2 link\(s\) looping"):
        info = open_dataset(f"folder:{root}", "train")
    assert time.perf_counter() - start < 10
    samples = info.dataset.samples  # type: ignore[attr-defined]
    assert sorted(os.path.basename(p) for p, _ in samples if "passwd" in p) == []
    labels = {os.path.basename(p): label for p, label in samples}
    assert all(labels[name] == (0 if name.startswith("cat") else 1) for name in labels)
    assert len(samples) == 6  # each image once: nothing read twice through a loop
