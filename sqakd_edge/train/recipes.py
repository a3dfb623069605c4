"""Named training recipes: the paper's settings and ours, printable and overridable flag by flag.

The paper's values come from the authors' released scripts (github.com/kaiqi123/SQAKD):
``CIFAR/train_fp.py`` and ``CIFAR/train_quant.py`` (argparse defaults), ``CIFAR/scripts/run_*.sh``,
``TinyImageNet/main.py`` and ``TinyImageNet/scripts/run_tinyimagenet_*.sh``. A recipe exists per model
only where those scripts differ by model; each description says where its numbers come from, and
"our choice" where no script gives one.

Where the authors' code and ours differ by design (kept on purpose, so the recipes say it once here):
Tiny-ImageNet's script trains quantizer parameters in the model's single SGD group (same lr, same
weight decay) and warms up from lr 1e-4; our loop gives quantizer parameters their own group without
weight decay (``quant_lr`` set equal to ``lr`` below) and warms up linearly from ``lr / warmup_iters``.
Their Tiny-ImageNet cross-entropy uses label smoothing 0.1, ours none. The first and last layers stay
in full precision in every setting of the paper (CIFAR's QConv layers skip them; MQBench's academic
backend gives them 32 bits on Tiny-ImageNet), which is ``QuantConfig``'s default, so no recipe changes it.
"""

from __future__ import annotations

import os
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

    @property
    def for_teacher(self) -> bool:
        """Whether the recipe trains a float teacher (``method="fp"``) rather than a quantized student."""
        return self.settings.get("method") == "fp"

    def apply(self, base: TrainConfig | None = None, **overrides: Any) -> TrainConfig:
        """The recipe's config, with ``overrides`` (e.g. from CLI flags; None values are ignored)."""
        config = replace(base or TrainConfig(), **self.settings)
        return replace(config, **{k: v for k, v in overrides.items() if v is not None})

    def check_fits(self, data_spec: str | os.PathLike[str], *, teacher: bool) -> None:
        """Refuse a recipe meant for another dataset, or for the other kind of run (teacher vs student).

        Args:
            data_spec: the run's dataset spec (``cifar10:PATH``, ``embedded``, a bare path, ...).
            teacher: whether the run trains a float teacher.

        Raises:
            ConfigError: one line naming the recipe's datasets (or kind) and the recipes that would fit.
        """
        if teacher != self.for_teacher:
            wanted = "float teachers (--fp)" if self.for_teacher else "quantized students (--teacher CKPT)"
            fitting = [r.name for r in RECIPES.values() if r.for_teacher == teacher]
            raise ConfigError(f"recipe {self.name!r} is for {wanted}; for this run choose one of: "
                              f"{', '.join(sorted(fitting))}")
        if not self.datasets:
            return
        kind = dataset_kind(data_spec)
        if kind is not None and kind not in self.datasets:
            fitting = sorted(r.name for r in RECIPES.values()
                             if r.for_teacher == teacher and (not r.datasets or kind in r.datasets))
            raise ConfigError(f"recipe {self.name!r} is for {', '.join(self.datasets)}, but the data {data_spec} is "
                              f"{kind}; choose one of: {', '.join(fitting)}")


def dataset_kind(data_spec: str | os.PathLike[str]) -> str | None:
    """The dataset a spec names, as recipes list it; None for image folders (any recipe may fit them).

    ``embedded`` is the Fashion-MNIST subset, so it counts as ``fashion-mnist``; a bare path is detected
    on disk the way :func:`sqakd_edge.data.open_dataset` does.

    Raises:
        DataError: for a malformed spec or a bare path that does not exist.
    """
    from ..data.spec import detect_kind, parse_spec

    kind, path = parse_spec(data_spec)
    if kind is None:
        assert path is not None
        kind = detect_kind(path)
    if kind == "embedded":
        return "fashion-mnist"
    if kind in ("folder", "unlabeled"):
        return None
    return kind


_CIFAR_CODE = "authors' CIFAR/train_quant.py defaults"
_CIFAR_FP_CODE = "authors' CIFAR/train_fp.py defaults"
_TINY = ("Tiny-ImageNet (authors' TinyImageNet/main.py: SGD Nesterov 0.9, 2,500-iteration warm-up then cosine to 0, "
         "100 epochs; lr/wd/batch from scripts/run_tinyimagenet_{}.sh)")

_ADAM_PAPER = {"optimizer": "adam", "lr": 1e-3, "quant_lr": 1e-5, "weight_decay": 1e-4, "schedule": "cosine"}
_SGD_FP = {"method": "fp", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
           "schedule": "cosine"}
_ADAM_C100 = {**_ADAM_PAPER, "lr": 5e-4, "quant_lr": 5e-6, "weight_decay": 5e-4, "batch_size": 64, "epochs": 720}
_SGD_C100_FP = {**_SGD_FP, "lr": 0.05, "weight_decay": 5e-4, "batch_size": 64, "epochs": 720}
_TINY_FP = {"method": "fp", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
            "schedule": "cosine", "warmup_iters": 2500, "epochs": 100, "batch_size": 64}
# Quantizer parameters share the model's lr in the authors' single optimizer group.
_TINY_Q = {"optimizer": "sgd", "lr": 5e-4, "quant_lr": 5e-4, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
           "schedule": "cosine", "warmup_iters": 2500, "epochs": 100, "batch_size": 64}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        # --- ours: the embedded demo and the Fashion-MNIST accuracy benchmark
        Recipe("demo-fp", "float teacher for the embedded demo: short Adam run (our choice)", (),
               {"method": "fp", "optimizer": "adam", "lr": 2e-3, "weight_decay": 1e-4, "epochs": 4,
                "batch_size": 128}),
        Recipe("demo", "SQAKD student for the embedded demo: the paper's CIFAR optimiser, few epochs, quantizer lr "
               "1e-4 so ranges move in a short run (our choice)", (),
               {**_ADAM_PAPER, "quant_lr": 1e-4, "epochs": 3, "batch_size": 128}),
        Recipe("fashion-mnist-fp", "float Fashion-MNIST teacher for benchmarks/accuracy_fmnist.py (our choice)",
               ("fashion-mnist",),
               {"method": "fp", "optimizer": "adam", "lr": 2e-3, "weight_decay": 1e-4, "epochs": 8,
                "batch_size": 256}),
        Recipe("fashion-mnist", "SQAKD/QAT students on Fashion-MNIST: the paper's CIFAR Adam recipe with quantizer "
               "lr 1e-4 for short runs (our choice)", ("fashion-mnist",),
               {**_ADAM_PAPER, "quant_lr": 1e-4, "epochs": 4, "batch_size": 256}),
        # --- CIFAR-10/100 (authors' CIFAR code: Adam for students, SGD for float teachers, cosine)
        Recipe("cifar-fp", f"float CIFAR teacher ({_CIFAR_FP_CODE}: SGD 0.1, momentum 0.9, wd 1e-4, batch 256, "
               "cosine, 400 epochs; run_cifar10_vgg8.sh uses them as they are)", ("cifar10", "cifar100"),
               {**_SGD_FP, "batch_size": 256, "epochs": 400}),
        Recipe("cifar", f"SQAKD CIFAR student ({_CIFAR_CODE}: Adam, lr 1e-3, quantizer lr 1e-5, wd 1e-4, batch 256, "
               "cosine, 400 epochs; run_cifar10_vgg8.sh uses them as they are)", ("cifar10", "cifar100"),
               {**_ADAM_PAPER, "batch_size": 256, "epochs": 400}),
        Recipe("cifar10-resnet20-fp", f"float ResNet-20 teacher on CIFAR-10 ({_CIFAR_FP_CODE} with 1,200 epochs, "
               "run_cifar10_resnet20.sh)", ("cifar10",), {**_SGD_FP, "batch_size": 256, "epochs": 1200}),
        Recipe("cifar10-resnet20", f"SQAKD ResNet-20 student on CIFAR-10 ({_CIFAR_CODE} with 1,200 epochs, "
               "run_cifar10_resnet20.sh)", ("cifar10",), {**_ADAM_PAPER, "batch_size": 256, "epochs": 1200}),
        Recipe("cifar100-fp", "float CIFAR-100 teacher, ResNet-32 and VGG-13 (run_cifar100_resnet32.sh, "
               "run_cifar100_vgg13.sh: SGD 0.05, momentum 0.9, wd 5e-4, batch 64, cosine, 720 epochs)",
               ("cifar100",), _SGD_C100_FP),
        Recipe("cifar100", "SQAKD CIFAR-100 student, ResNet-32 and VGG-13 (run_cifar100_resnet32.sh, "
               "run_cifar100_vgg13.sh: Adam, lr 5e-4, quantizer lr 5e-6, wd 5e-4, batch 64, cosine, 720 epochs; "
               "their ResNet-32 W3A3/W4A4 runs used wd 2.5e-5: --weight-decay 2.5e-5)", ("cifar100",), _ADAM_C100),
        # --- Tiny-ImageNet (authors' MQBench-based code)
        Recipe("tinyimagenet-fp", "float teacher, ResNet-18 / ShuffleNet-V2 / SqueezeNet: lr 0.05, wd 5e-4, batch 64. "
               + _TINY.format("resnet18"), ("tiny-imagenet",), _TINY_FP),
        Recipe("tinyimagenet", "SQAKD student, ResNet-18 / ShuffleNet-V2 / SqueezeNet (W4A4, W8A8): lr 5e-4 (also for "
               "quantizer parameters), wd 5e-4, batch 64; their 3-bit runs used lr 4e-3, wd 1e-4. "
               + _TINY.format("resnet18"), ("tiny-imagenet",), _TINY_Q),
        Recipe("tinyimagenet-vgg11-fp", "float VGG-11-BN teacher: as tinyimagenet-fp with batch 32. "
               + _TINY.format("vgg11"), ("tiny-imagenet",), {**_TINY_FP, "batch_size": 32}),
        Recipe("tinyimagenet-vgg11", "SQAKD VGG-11-BN student: as tinyimagenet with batch 32. "
               + _TINY.format("vgg11"), ("tiny-imagenet",), {**_TINY_Q, "batch_size": 32}),
        Recipe("tinyimagenet-mobilenetv2-fp", "float MobileNet-V2 teacher: lr 0.004, wd 1e-4, batch 64. "
               + _TINY.format("mobilenetV2"), ("tiny-imagenet",),
               {**_TINY_FP, "lr": 0.004, "weight_decay": 1e-4}),
        Recipe("tinyimagenet-mobilenetv2", "SQAKD MobileNet-V2 student: as tinyimagenet with batch 32 (their LSQ and "
               "DoReFa runs; PACT used 64). " + _TINY.format("mobilenetV2"), ("tiny-imagenet",),
               {**_TINY_Q, "batch_size": 32}),
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
