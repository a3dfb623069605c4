"""Recipes: the paper's settings by name, overridable, refused for another dataset; and the other bad
inputs of the zoo issue (class-count mismatch, Tiny-ImageNet without val_annotations.txt) end to end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sqakd_edge.config import TrainConfig
from sqakd_edge.errors import ConfigError
from sqakd_edge.train.recipes import RECIPES, dataset_kind, describe_recipes, get_recipe, list_recipes

from .cli_helpers import one_line_error, run
from .test_data_tiny_imagenet import write_tiny_imagenet


@pytest.mark.parametrize("name", list_recipes())
def test_every_recipe_is_a_valid_config_of_its_kind(name):
    recipe = get_recipe(name)
    config = recipe.apply()
    assert isinstance(config, TrainConfig)
    assert (config.method == "fp") == recipe.for_teacher
    assert recipe.description and set(recipe.settings) <= {f.name for f in dataclasses.fields(TrainConfig)}


def test_the_papers_settings():
    cifar = get_recipe("cifar").apply()
    assert (cifar.optimizer, cifar.lr, cifar.quant_lr, cifar.weight_decay, cifar.batch_size, cifar.schedule) == (
        "adam", 1e-3, 1e-5, 1e-4, 256, "cosine")
    assert get_recipe("cifar10-resnet20").apply().epochs == 1200
    c100 = get_recipe("cifar100").apply()
    assert (c100.lr, c100.quant_lr, c100.weight_decay, c100.batch_size) == (5e-4, 5e-6, 5e-4, 64)
    tiny = get_recipe("tinyimagenet").apply()
    assert (tiny.optimizer, tiny.nesterov, tiny.warmup_iters, tiny.epochs, tiny.schedule) == ("sgd", True, 2500, 100,
                                                                                              "cosine")
    assert get_recipe("tinyimagenet-vgg11").apply().batch_size == 32
    assert get_recipe("tinyimagenet-mobilenetv2-fp").apply().lr == 0.004
    for recipe in RECIPES.values():  # values not from the authors' scripts say so
        assert "authors'" in recipe.description or "run_" in recipe.description or "our choice" in recipe.description


def test_flags_override_the_recipe_and_none_keeps_it():
    config = get_recipe("cifar").apply(lr=0.5, epochs=None, batch_size=32)
    assert (config.lr, config.epochs, config.batch_size, config.quant_lr) == (0.5, 400, 32, 1e-5)
    with pytest.raises(ConfigError, match="unknown setting"):
        get_recipe("cifar").apply(learning_rate=1.0)


def test_list_recipes_prints_every_recipe_with_its_datasets():
    text = describe_recipes()
    for name, recipe in RECIPES.items():
        assert f"\n{name}" in f"\n{text}"
        if recipe.datasets:
            assert f"{name} [{', '.join(recipe.datasets)}]" in text
    r = run("train", "--list-recipes")
    assert r.exit_code == 0 and "tinyimagenet-vgg11 [tiny-imagenet]" in r.output and "warmup_iters=2500" in r.output


def test_dataset_kind_of_a_spec(tmp_path):
    assert dataset_kind("embedded") == dataset_kind("fashion-mnist") == "fashion-mnist"
    assert dataset_kind(f"cifar100:{tmp_path}") == "cifar100"
    assert dataset_kind(f"tiny-imagenet:{tmp_path}") == "tiny-imagenet"
    assert dataset_kind(f"folder:{tmp_path}") is None and dataset_kind(f"unlabeled:{tmp_path}") is None
    (tmp_path / "c" / "cifar-10-batches-py").mkdir(parents=True)
    assert dataset_kind(tmp_path / "c") == "cifar10"  # a bare path: detected on disk like open_dataset does
    assert dataset_kind(tmp_path) is None  # a plain folder of images: any recipe


def test_recipe_for_another_dataset_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe 'cifar' is for cifar10, cifar100, but the data .* is tiny-imagenet"):
        get_recipe("cifar").check_fits(f"tiny-imagenet:{tmp_path}", teacher=False)
    get_recipe("cifar").check_fits(f"folder:{tmp_path}", teacher=False)  # folders take any recipe
    get_recipe("demo").check_fits(f"cifar10:{tmp_path}", teacher=False)  # so do recipes without datasets
    err = one_line_error(run("train", "--fp", "--recipe", "tinyimagenet-fp", "--data", "embedded", "--out",
                             tmp_path / "o"), "'tinyimagenet-fp' is for tiny-imagenet", "is fashion-mnist",
                         "choose one of:")
    assert "fashion-mnist-fp" in err and "cifar-fp" not in err  # only recipes that fit are suggested
    assert not (tmp_path / "o").exists()


def test_teacher_recipe_for_a_student_and_back_is_refused(tmp_path):
    one_line_error(run("train", "--teacher", tmp_path / "t.pt", "--recipe", "cifar-fp", "--data", f"cifar10:{tmp_path}",
                       "--out", tmp_path / "o"), "'cifar-fp' is for float teachers (--fp)", "cifar10-resnet20")
    one_line_error(run("train", "--fp", "--recipe", "cifar", "--data", f"cifar10:{tmp_path}", "--out", tmp_path / "o"),
                   "'cifar' is for quantized students", "cifar-fp")


def _rgb_folder(root: Path, classes: int, per_class: int = 8) -> Path:
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((32, 32, 3), 25 * c + 3 * i, np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


def test_class_count_mismatch_between_data_and_teacher(tmp_path):
    three = _rgb_folder(tmp_path / "three", 3)
    r = run("train", "--fp", "--data", f"folder:{three}", "--out", tmp_path / "t", "--epochs", "1", "--batch-size", "8",
            "--no-progress")
    assert r.exit_code == 0, r.output
    four = _rgb_folder(tmp_path / "four", 4)
    one_line_error(run("train", "--teacher", tmp_path / "t" / "best.pt", "--data", f"folder:{four}", "--out",
                       tmp_path / "s"), "has 4 classes but the teacher", "predicts 3")


def test_tiny_imagenet_without_val_annotations(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    (base / "val" / "val_annotations.txt").unlink()
    one_line_error(run("train", "--fp", "--model", "resnet18", "--recipe", "tinyimagenet-fp", "--data",
                       f"tiny-imagenet:{base}", "--out", tmp_path / "o"), "lacks val/val_annotations.txt", str(base))
