"""Named training recipes: the paper's settings and ours, printable and overridable flag by flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import TrainConfig, replace
from ..errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """A named set of :class:`TrainConfig` values.

    Args:
        name: the recipe's name.
        description: where the values come from.
        datasets: dataset kinds it is meant for (empty: any).
        settings: TrainConfig field values.
    """

    name: str
    description: str
    datasets: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)

    def apply(self, base: TrainConfig | None = None, **overrides: Any) -> TrainConfig:
        """The recipe's config, with ``overrides`` (e.g. from CLI flags; None values are ignored)."""
        config = replace(base or TrainConfig(), **self.settings)
        return replace(config, **{k: v for k, v in overrides.items() if v is not None})


_ADAM_PAPER = {"optimizer": "adam", "lr": 1e-3, "quant_lr": 1e-5, "weight_decay": 1e-4, "schedule": "cosine"}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("demo-fp", "float teacher for the embedded demo: short Adam run", (),
               {"method": "fp", "optimizer": "adam", "lr": 2e-3, "weight_decay": 1e-4, "epochs": 4,
                "batch_size": 128}),
        Recipe("demo", "SQAKD student for the embedded demo: the paper's CIFAR optimiser, few epochs", (),
               {**_ADAM_PAPER, "quant_lr": 1e-4, "epochs": 3, "batch_size": 128}),
        Recipe("cifar-fp", "float CIFAR teacher: SGD 0.1, Nesterov, cosine (standard ResNet recipe)",
               ("cifar10", "cifar100"),
               {"method": "fp", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
                "weight_decay": 5e-4, "epochs": 200, "batch_size": 128}),
        Recipe("cifar", "SQAKD CIFAR (authors' code): Adam, lr 1e-3, quantizer lr 1e-5, wd 1e-4, batch 256, cosine",
               ("cifar10", "cifar100"), {**_ADAM_PAPER, "epochs": 200, "batch_size": 256}),
        Recipe("tinyimagenet-fp", "float Tiny-ImageNet teacher: SGD Nesterov, 2,500-iteration warm-up, cosine",
               ("tiny-imagenet",),
               {"method": "fp", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
                "weight_decay": 5e-4, "warmup_iters": 2500, "epochs": 100, "batch_size": 128}),
        Recipe("tinyimagenet", "SQAKD Tiny-ImageNet (authors' code): SGD Nesterov, 2,500-iteration warm-up, "
               "cosine, 100 epochs", ("tiny-imagenet",),
               {"optimizer": "sgd", "lr": 5e-3, "quant_lr": 5e-4, "momentum": 0.9, "nesterov": True,
                "weight_decay": 1e-4, "warmup_iters": 2500, "epochs": 100, "batch_size": 128}),
        Recipe("fashion-mnist-fp", "float Fashion-MNIST teacher for the accuracy benchmark", ("fashion-mnist",),
               {"method": "fp", "optimizer": "adam", "lr": 2e-3, "weight_decay": 1e-4, "epochs": 8,
                "batch_size": 256}),
        Recipe("fashion-mnist", "SQAKD/QAT students on Fashion-MNIST, paper CIFAR optimiser", ("fashion-mnist",),
               {**_ADAM_PAPER, "quant_lr": 1e-4, "epochs": 4, "batch_size": 256}),
    )
}


def list_recipes() -> list[str]:
    """Recipe names, sorted."""
    return sorted(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ConfigError lists the valid names."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(f"unknown recipe {name!r}; choose one of: {', '.join(list_recipes())} "
                          "(see 'sqakd-edge train --list-recipes')") from None


def describe_recipes() -> str:
    """A printable table of every recipe and its settings."""
    lines = []
    for name in list_recipes():
        r = RECIPES[name]
        data = f" [{', '.join(r.datasets)}]" if r.datasets else ""
        settings = ", ".join(f"{k}={v}" for k, v in r.settings.items())
        lines.append(f"{name}{data}: {r.description}\n    {settings}")
    return "\n".join(lines)
