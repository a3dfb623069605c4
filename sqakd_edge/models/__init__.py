"""Float model architectures and their registry.

Importing this package registers every family; add a family by adding a module that uses
:func:`register` and importing it here.
"""

from . import cifar_resnet, cifar_vgg, tinyimagenet  # noqa: F401  (register their models)
from .registry import ModelSpec, create_model, list_models, model_spec, register

__all__ = ["ModelSpec", "create_model", "list_models", "model_spec", "register"]
