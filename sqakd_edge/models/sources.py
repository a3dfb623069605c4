"""Where a model comes from: a registered name, torchvision's zoo, or the user's own builder.

A model source is a string, recorded in every checkpoint so export and resume rebuild the same network:

* ``resnet20`` — a registered model (``sqakd-edge models``);
* ``torchvision:NAME`` or ``torchvision:NAME?key=value&...`` — any classification builder of
  ``torchvision.models`` (random weights; yours come from ``--teacher``), with builder arguments such as
  ``torchvision:vit_b_16?image_size=64``;
* ``file:PATH.py:FUNCTION`` — a function in your own Python file that returns an ``nn.Module``;
* ``module:package.module:FUNCTION`` — the same from an importable module (timm's and other libraries'
  factories too, e.g. ``module:timm:create_model?model_name=resnet18``).

Your builder is your code, run because you named it; weights never run code (``weights.py``). A builder is
called with ``num_classes`` and ``in_channels`` only when its signature takes them; otherwise the number of
classes is checked at the first forward, and the first conv is adapted to the input channels.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError, first_line
from .registry import list_models, model_spec

KINDS = ("registered", "torchvision", "file", "module")
# torchvision builders whose smallest useful input differs from 224 (the others take 224 by default)
_TORCHVISION_SIZE = {"inception_v3": 299}
# builders with auxiliary heads that only run in training mode: off by default (their weights are ignored)
_TORCHVISION_DEFAULTS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}
AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")


@dataclass(frozen=True)
class ModelSource:
    """A parsed model source.

    Attributes:
        kind: ``registered``, ``torchvision``, ``file`` or ``module``.
        name: the registered or torchvision name, or the builder function's name.
        location: the file (absolute) or module of a builder; None otherwise.
        kwargs: builder arguments from ``?key=value&...``.
    """

    kind: str
    name: str
    location: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        """The canonical source string (what checkpoints record)."""
        head = {"registered": self.name, "torchvision": f"torchvision:{self.name}",
                "file": f"file:{self.location}:{self.name}", "module": f"module:{self.location}:{self.name}"}[self.kind]
        if not self.kwargs:
            return head
        return head + "?" + "&".join(f"{k}={_format_value(v)}" for k, v in sorted(self.kwargs.items()))

    @property
    def display_name(self) -> str:
        """A short name for tables and messages."""
        return self.name if self.kind == "registered" else self.spec.split("?")[0]

    def with_kwargs(self, **extra: Any) -> ModelSource:
        """The same source with more builder arguments (those already given win)."""
        return ModelSource(self.kind, self.name, self.location, {**extra, **self.kwargs})


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _format_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def _parse_kwargs(text: str, source: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for part in filter(None, text.split("&")):
        key, sep, value = part.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(f"model source {source!r}: builder argument {part!r} is not key=value")
        kwargs[key] = _parse_value(value)
    return kwargs


def torchvision_classifiers() -> list[str]:
    """Names of torchvision's classification builders (``torchvision.models``, not detection etc.)."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def parse_model_source(text: str) -> ModelSource:
    """Parse a model source string (see the module docstring).

    Raises:
        ConfigError: an unknown registered or torchvision name (with close matches), or a malformed source.
    """
    raw = str(text).strip()
    if not raw:
        raise ConfigError("empty model source; give a registered name (sqakd-edge models), torchvision:NAME, "
                          "file:PATH.py:FUNCTION or module:package.module:FUNCTION")
    head, _, query = raw.partition("?")
    kwargs = _parse_kwargs(query, raw)
    kind, sep, rest = head.partition(":")
    if not sep:
        if head in list_models():
            if kwargs:
                raise ConfigError(f"registered model {head!r} takes no builder arguments; drop ?{query}")
            return ModelSource("registered", head)
        known = list_models() + [f"torchvision:{n}" for n in torchvision_classifiers()]
        close = difflib.get_close_matches(head, known, n=4, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown model {head!r}{hint}; give a registered name ({', '.join(list_models())}), "
                          "torchvision:NAME, file:PATH.py:FUNCTION or module:package.module:FUNCTION "
                          "(sqakd-edge models lists them)")
    if kind == "torchvision":
        names = torchvision_classifiers()
        if rest not in names:
            close = difflib.get_close_matches(rest, names, n=5, cutoff=0.5)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise ConfigError(f"torchvision has no classification model {rest!r}{hint} "
                              "(sqakd-edge models lists all of them)")
        return ModelSource("torchvision", rest, None, kwargs)
    if kind in ("file", "module"):
        location, sep, function = rest.rpartition(":")
        if not sep or not location or not function.isidentifier():
            form = "file:PATH.py:FUNCTION" if kind == "file" else "module:package.module:FUNCTION"
            raise ConfigError(f"model source {raw!r} is not {form}")
        if kind == "file":
            location = str(Path(location).expanduser().resolve())
        return ModelSource(kind, function, location, kwargs)
    raise ConfigError(f"unknown model source kind {kind!r} in {raw!r}; use a registered name, torchvision:NAME, "
                      "file:PATH.py:FUNCTION or module:package.module:FUNCTION")


def builder_file_sha256(source: ModelSource) -> str | None:
    """The sha256 of a ``file:`` builder (recorded beside the source), else None."""
    if source.kind != "file" or source.location is None or not os.path.isfile(source.location):
        return None
    return hashlib.sha256(Path(source.location).read_bytes()).hexdigest()


def _load_function(source: ModelSource) -> Callable[..., Any]:
    """Import the user's builder function."""
    assert source.location is not None
    where = source.location
    if source.kind == "file":
        path = Path(where)
        if not path.is_file():
            raise ConfigError(f"model file {path} does not exist; give file:PATH.py:FUNCTION with an existing file")
        name = "sqakd_edge_user_model_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"model file {path} is not a Python file Python can import; give a .py file")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))  # the builder may import its neighbours
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's code: any error it raises is theirs to fix
            raise ConfigError(f"importing model file {path} failed: {first_line(exc, typed=True)}; fix the file "
                              "(it is run as your own code)") from None
        finally:
            sys.path.remove(str(path.parent))
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:  # ModuleNotFoundError, or whatever the module raises on import
            raise ConfigError(f"cannot import module {where!r} for the model: {first_line(exc, typed=True)}; "
                              "install it or add its folder to PYTHONPATH") from None
    function = getattr(module, source.name, None)
    if not callable(function):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        close = difflib.get_close_matches(source.name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else (f"; it defines: {', '.join(names[:10])}"
                                                                    if names else "")
        raise ConfigError(f"{where} has no function {source.name!r}{hint}")
    return function  # type: ignore[no-any-return]


def _accepts(function: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


@dataclass
class Built:
    """A freshly built float model and what its source says about its input.

    Attributes:
        model: the ``nn.Module`` (random weights, eval mode not set).
        source: the source, with the builder arguments that were filled in.
        native_channels: the channels the builder made the model for (before any adaptation).
        default_size: the input side the architecture is made for, when the source knows it.
        default_mean: the normalisation it is made for, when the source knows it (ImageNet's for torchvision).
        default_std: as ``default_mean``.
    """

    model: nn.Module
    source: ModelSource
    native_channels: int
    default_size: int | None
    default_mean: tuple[float, ...] | None
    default_std: tuple[float, ...] | None


def build(source: ModelSource, *, num_classes: int | None, in_channels: int | None,
          image_size: int | None = None) -> Built:
    """Build the float model a source names, with random weights.

    Args:
        source: the parsed source.
        num_classes: classifier outputs (None: the builder's default; registered models need it).
        in_channels: input channels; a registered model is built for them, other builders get them when their
            signature takes ``in_channels`` (else adapt with :func:`adapt_input_channels` after loading weights).
        image_size: the input side, passed as ``image_size`` to torchvision's ViT (which fixes it at build).

    Raises:
        ConfigError: a builder that is missing, fails, or does not return an ``nn.Module``.
    """
    if source.kind == "registered":
        from .registry import create_model

        spec = model_spec(source.name)
        channels = in_channels or 3
        model = create_model(source.name, num_classes=num_classes or 10, in_channels=channels)
        return Built(model, source, channels, spec.input_size, None, None)
    if source.kind == "torchvision":
        import torchvision

        fill: dict[str, Any] = dict(_TORCHVISION_DEFAULTS.get(source.name, {}))
        if source.name.startswith("vit_") and image_size:
            fill["image_size"] = image_size
        source = source.with_kwargs(**fill)
        builder = torchvision.models.get_model_builder(source.name)
        kwargs = {**source.kwargs, "weights": None}
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        model = _call(builder, kwargs, source)
        size = source.kwargs.get("image_size") or _TORCHVISION_SIZE.get(source.name, 224)
        return Built(model, source, 3, int(size), IMAGENET_MEAN, IMAGENET_STD)
    function = _load_function(source)
    kwargs = dict(source.kwargs)
    if num_classes is not None and _accepts(function, "num_classes"):
        kwargs.setdefault("num_classes", num_classes)
    native = 3
    if in_channels is not None and _accepts(function, "in_channels"):
        kwargs.setdefault("in_channels", in_channels)
        native = in_channels
    model = _call(function, kwargs, source)
    return Built(model, source, native, None, None, None)


def _call(builder: Callable[..., Any], kwargs: dict[str, Any], source: ModelSource) -> nn.Module:
    try:
        model = builder(**kwargs)
    except Exception as exc:  # the builder's own error, for any reason
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ConfigError(f"model builder {source.display_name}({shown}) failed: {first_line(exc, typed=True)}; "
                          "check its arguments (?key=value in the source)") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model builder {source.display_name} returned {type(model).__name__}, not a "
                          "torch.nn.Module; it must return the model")
    return model


def first_conv_name(model: nn.Module) -> str | None:
    """The first Conv2d the forward calls (fx call order), or the first defined one when fx cannot trace."""
    from ..graph import TraceFailure, called_modules, trace

    try:
        names = called_modules(trace(model), (nn.Conv2d,))
    except TraceFailure:
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return names[0] if names else None


def adapt_input_channels(model: nn.Module, channels: int) -> str:
    """Make the first conv take ``channels`` inputs, keeping what its weights compute on gray or repeated input.

    As timm's ``adapt_input_conv``: for 1 channel the kernels are summed over the input channels (a gray image
    replicated to RGB gives the same output), for more they are repeated cyclically and scaled.

    Returns:
        The adapted layer's name.

    Raises:
        ConfigError: no Conv2d to adapt, or a grouped first conv.
    """
    from ..graph import set_submodule

    name = first_conv_name(model)
    if name is None:
        raise ConfigError(f"{type(model).__name__} has no Conv2d whose input channels could become {channels}; "
                          "give --in-channels matching the model")
    conv = model.get_submodule(name)
    assert isinstance(conv, nn.Conv2d)
    if conv.in_channels == channels:
        return name
    if conv.groups != 1:
        raise ConfigError(f"the first conv {name} is grouped (groups={conv.groups}); it cannot be adapted to "
                          f"{channels} input channels: give images with {conv.in_channels} channels")
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,  # type: ignore[arg-type]
                    conv.dilation, 1, conv.bias is not None, conv.padding_mode,  # type: ignore[arg-type]
                    device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        weight = conv.weight
        if channels == 1:
            new.weight.copy_(weight.sum(dim=1, keepdim=True))
        else:
            reps = -(-channels // conv.in_channels)
            new.weight.copy_(weight.repeat(1, reps, 1, 1)[:, :channels] * (conv.in_channels / channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)  # type: ignore[union-attr]
    set_submodule(model, name, new)
    return name
