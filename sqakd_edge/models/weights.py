"""Teacher weights as users keep them: a ``state_dict`` file, or a training checkpoint that holds one.

Accepted: a plain ``state_dict`` (``torch.save(model.state_dict(), path)``), or a dict holding one under a usual
key (``state_dict``, ``model``, ``model_state_dict``, ``net``, ``ema``, ...), with the ``module.`` prefixes of
DataParallel/DDP and the ``_orig_mod.`` prefix of ``torch.compile`` stripped. Always loaded with
``weights_only=True``: a file from elsewhere cannot run code. A whole pickled ``nn.Module`` or a TorchScript
file is refused, with how to save a ``state_dict`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..safeload import SAVE_HINT, read_torch_file

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "ema", "model_ema", "state_dict_ema",
                   "module", "network", "weights", "params")
_PREFIXES = ("module.", "_orig_mod.")
def read_weights_file(path: str | Path) -> dict[str, Any]:
    """Load a weights file safely (``weights_only=True``) and return what it holds (a dict).

    Raises:
        CheckpointError: missing, a TorchScript file, a pickled module, corrupt, or not a dict.
    """
    obj = read_torch_file(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict (a dict of tensors); "
                              f"{SAVE_HINT}")
    return obj


def _tensors(d: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in d.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def extract_state_dict(obj: dict[str, Any], path: str | Path = "the file") -> dict[str, torch.Tensor]:
    """The ``state_dict`` inside a loaded weights file, prefixes stripped.

    Raises:
        CheckpointError: no tensors anywhere a state_dict usually is.
    """
    candidates = [obj]
    for key in STATE_DICT_KEYS:
        value = obj.get(key)
        if isinstance(value, dict):
            candidates.append(value)
            inner = value.get("state_dict")
            if isinstance(inner, dict):
                candidates.append(inner)
    best = max((_tensors(c) for c in candidates), key=len)
    if not best:
        keys = ", ".join(sorted(map(str, obj))[:8])
        raise CheckpointError(f"{path} holds no tensors where a state_dict would be (top-level keys: {keys}); "
                              f"{SAVE_HINT}")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in best):
            best = {k[len(prefix):]: v for k, v in best.items()}
    return best


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], *, what: str, ignore_prefixes: tuple[str, ...] = ()
              ) -> list[str]:
    """Load ``state_dict`` into ``model`` strictly, or raise one line naming what does not fit.

    Args:
        model: the float model built from the source.
        state_dict: the weights.
        what: the weights' name and the model's, for the message (``"weights.pt for torchvision:resnet50"``).
        ignore_prefixes: keys under these prefixes are dropped when the model lacks them (e.g. the training-only
            auxiliary heads of GoogLeNet/Inception when the student is built without them).

    Returns:
        The dropped keys.

    Raises:
        CheckpointError: missing or unexpected keys, or tensors of another shape.
    """
    own = model.state_dict()
    dropped = [k for k in state_dict if k not in own and k.startswith(ignore_prefixes)]
    weights = {k: v for k, v in state_dict.items() if k not in dropped}
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    mismatched = [f"{k} (file {tuple(weights[k].shape)}, model {tuple(own[k].shape)})" for k in own
                  if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", mismatched)):
            if keys:
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
        hint = ("pass --num-classes to match the weights' classifier" if mismatched and not missing and not unexpected
                else "pass the weights of this architecture, or the --model they were trained with")
        raise CheckpointError(f"the weights {what} do not fit: {'; '.join(parts)}; {hint}")
    model.load_state_dict(weights, strict=True)
    return dropped


def classes_in_weights(state_dict: dict[str, torch.Tensor], classifier: str | None) -> int | None:
    """The number of classes the weights' classifier has (its weight's rows), when it is there."""
    if classifier is None:
        return None
    weight = state_dict.get(f"{classifier}.weight")
    return int(weight.shape[0]) if isinstance(weight, torch.Tensor) and weight.dim() >= 1 else None
