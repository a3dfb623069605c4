"""The command line's shared pieces: option groups, parameter types, and ``--config FILE``.

Option groups are declared once and reused by the commands that share them (Polygraphy's argument
groups): the quantizer core (``train``, ``demo``), the training overrides (``train``), the input contract of
a model the user brings (``train``), and the remote-device options (``bench``), which also know when they
were given where they do not apply.

``--config FILE`` (TOML, YAML or JSON) gives any of a command's options from a file; flags on the command
line override it. The file holds the options at its top level, or in a table named after the command
(``[train]``, ``[bench]``), so one file can serve several commands; ``summary.json`` of a training run and
``results.json`` of a bench record the resolved options the same way (``options.train``, ``options.bench``),
so ``--config`` on either repeats the run exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .config import ACT_SIGNS, BACKWARDS, OPTIMIZERS, QUANTIZERS, QuantConfig
from .errors import ConfigError, require

# --- parameter types --------------------------------------------------------------------------------------


class _InputShape(click.ParamType):
    """``NxCxHxW`` (e.g. ``1x3x224x224``) -> ``(N, C, H, W)``; a bad value is a one-line ConfigError."""

    name = "NxCxHxW"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        parts = str(value).lower().replace(",", "x").split("x")
        try:
            dims = tuple(int(p) for p in parts)
        except ValueError:
            dims = ()
        if len(dims) != 4 or any(d < 1 for d in dims):
            raise ConfigError(f"--input-shape {value!r} is not NxCxHxW with positive integers (e.g. 1x1x28x28)")
        return dims


class _Batches(click.ParamType):
    """``"1,32"`` -> ``(1, 32)``: positive batch sizes, each once; a bad value is a one-line ConfigError."""

    name = "N[,N...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        text = str(value)
        sizes: list[int] = []
        for part in text.split(","):
            part = part.strip()
            if not part.isdigit() or int(part) < 1:
                raise ConfigError(f"--batch takes positive integers separated by commas (e.g. 1,32), got {text!r}")
            if int(part) not in sizes:
                sizes.append(int(part))
        return tuple(sizes)


class _InputSize(click.ParamType):
    """``"224"`` -> ``(224, 224)``; ``"224x160"`` -> ``(224, 160)`` (height x width); a bad value is a ConfigError."""

    name = "N|HxW"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):  # recorded by a run (--config summary.json): [224, 160]
            value = "x".join(str(v) for v in value)
        parts = str(value).lower().replace("×", "x").split("x")
        try:
            dims = [int(p) for p in parts]
        except ValueError:
            dims = []
        if len(dims) == 1:
            dims = dims * 2
        if len(dims) != 2 or any(d < 1 for d in dims):
            raise ConfigError(f"--input-size {value!r} is not N or HxW with positive integers (e.g. 224 or 224x160)")
        return dims[0], dims[1]


class _Floats(click.ParamType):
    """``"0.485,0.456,0.406"`` -> a tuple of finite floats; a bad value is a one-line ConfigError."""

    name = "X[,X...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        flag = f"--{param.name}" if param is not None and param.name else "the value"
        parts = list(value) if isinstance(value, tuple) else str(value).split(",")
        try:
            values = tuple(float(p) for p in parts if str(p).strip())
        except (TypeError, ValueError):
            values = ()
        if not values or not all(math.isfinite(v) for v in values):
            raise ConfigError(f"{flag} {value!r} is not a comma-separated list of finite numbers "
                              "(e.g. 0.485,0.456,0.406)")
        return values


INPUT_SHAPE = _InputShape()
INPUT_SIZE = _InputSize()
FLOATS = _Floats()
BATCHES = _Batches()


class OptionGroup:
    """Options declared once, applied to every command that shares them.

    Args:
        title: what the options are about (for messages).
        options: ``(param_decls, attrs)`` of each ``click.option``.
    """

    def __init__(self, title: str, options: list[tuple[tuple[str, ...], dict[str, Any]]]) -> None:
        self.title = title
        self.options = options
        made = [click.Option(list(decls), **attrs) for decls, attrs in options]
        self.names = [str(o.name) for o in made]
        self.flags = {str(o.name): o.opts[0] for o in made}

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        for decls, attrs in reversed(self.options):
            func = click.option(*decls, **attrs)(func)
        return func

    def given(self, params: dict[str, Any]) -> list[str]:
        """The flags of this group set to something other than "not given" (None or False)."""
        return [self.flags[name] for name in self.names if params.get(name) not in (None, False)]


def _opt(*decls: str, **attrs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return decls, attrs


QUANT_CORE = OptionGroup("quantization", [
    _opt("--quantizer", default="lsq", show_default=True, help=f"Forward family: one of {', '.join(QUANTIZERS)}."),
    _opt("--backward", type=click.Choice(BACKWARDS), default="ste", show_default=True,
         help="How gradients pass the rounding: ste or ewgs."),
    _opt("--wbits", type=int, default=4, show_default=True, help="Weight bits, 1-8."),
    _opt("--abits", type=int, default=4, show_default=True, help="Activation bits, 1-8."),
])

QUANT_LAYOUT = OptionGroup("quantization layout", [
    _opt("--per-tensor", is_flag=True, help="Per-tensor weight scales (default: per output channel)."),
    _opt("--act-sign", type=click.Choice(ACT_SIGNS), default="auto", show_default=True),
    _opt("--paper-grids", is_flag=True,
         help="The papers' exact grids (learned affine ranges, 2^8-level weights), not INT8-deployable ones."),
    _opt("--quantize-first-last", is_flag=True, help="Quantize the first and last layers too (paper: float)."),
    _opt("--first-last-bits", type=click.IntRange(0, 8), default=0, show_default=True,
         help="Quantize the first and last layers at N bits (implies --quantize-first-last; 0: at --wbits/--abits). "
              "8 gives an all-integer graph, the fastest on ONNX Runtime."),
    _opt("--residual-bits", type=int, default=8, show_default=True,
         help="Bits of the quantizers on residual Adds (branch and block outputs), so integer runtimes keep every "
              "conv and Add in integers; 0: float Adds (paper)."),
    _opt("--shared-residual-stream/--separate-residual-stream", default=True, show_default=True,
         help="Quantize a block output (or float block input) that quant layers read once, at --abits, with the "
              "quantizer those layers share: no requantization between blocks in the INT8 graph (DoReFa students "
              "share an LSQ quantizer there: DoReFa's fixed [0, 1] range would clip the skip). Separate: the "
              "stream at --residual-bits, each reader re-quantizing it."),
    _opt("--keep-float", default="", help="Comma-separated layer names to keep in float."),
    _opt("--int32-bias", is_flag=True,
         help="Train with ONNX Runtime's int32 conv biases (rounded onto input scale x weight scale), so that "
              "`export --target onnxruntime` runs what the student learned and passes its parity check "
              "(TensorRT keeps float biases: not needed there)."),
])



def quant_config(p: dict[str, Any]) -> QuantConfig:
    """The student's QuantConfig from the quantizer core and quantization layout options."""
    return QuantConfig(quantizer=p["quantizer"], backward=p["backward"], wbits=p["wbits"], abits=p["abits"],
                       weight_granularity="per_tensor" if p["per_tensor"] else "per_channel",
                       act_sign=p["act_sign"], deployable=not p["paper_grids"],
                       keep_first_last_float=not (p["quantize_first_last"] or p["first_last_bits"]),
                       first_last_bits=p["first_last_bits"], residual_bits=p["residual_bits"],
                       share_residual_stream=p["shared_residual_stream"],
                       keep_float=tuple(n for n in p["keep_float"].split(",") if n), int32_bias=p["int32_bias"])


TRAINING_OVERRIDES = OptionGroup("training overrides", [
    _opt("--epochs", type=int, help="Override the recipe's epochs."),
    _opt("--batch-size", type=int, help="Override the recipe's (global) batch size."),
    _opt("--lr", type=float, help="Override the model learning rate."),
    _opt("--quant-lr", type=float, help="Override the quantizer-parameter learning rate."),
    _opt("--weight-decay", type=float, help="Override the weight decay."),
    _opt("--optimizer", type=click.Choice(OPTIMIZERS), help="Override the optimiser."),
    _opt("--temperature", type=float, help="KL temperature T. [default: 4]"),
    _opt("--kd-weight", type=float, help="Weight of the KL term for ce+kd."),
    _opt("--val-fraction", type=float, help="Share of training data held out for label-free selection."),
    _opt("--seed", type=int, help="Random seed."),
    _opt("--amp/--no-amp", default=None,
         help="Mixed precision (default on): CUDA forwards, and the teacher's forward on CPUs with native bfloat16."),
    _opt("--augment/--no-augment", default=None,
         help="The dataset's random training transform (default on); off: every epoch sees the same inputs, "
              "and the teacher's logits are computed once and read back from the second epoch on."),
    _opt("--freeze-bn", is_flag=True, default=None,
         help="Students: keep the BatchNorm statistics they start with (the teacher's), so training normalises as "
              "evaluation does; scale and shift are still learned."),
])

CONTRACT = OptionGroup("input contract", [
    _opt("--input-size", type=INPUT_SIZE, help="Input size N or HxW. [default: the dataset's for registered models, "
         "224 for torchvision (299 inception_v3)]"),
    _opt("--in-channels", type=int, help="Input channels (images are converted). [default: the dataset's for "
         "registered models, else 3]"),
    _opt("--num-classes", type=int, help="Classes of the model's output. [default: the weights' classifier, else "
         "the data's]"),
    _opt("--mean", type=FLOATS, help="Per-channel normalisation mean, comma-separated. [default: the dataset's for "
         "registered models, else ImageNet's]"),
    _opt("--std", type=FLOATS, help="Per-channel normalisation std, comma-separated. [default: as --mean]"),
])

REMOTE = OptionGroup("remote device", [
    _opt("--host", default=None, help="USER@HOST (or an ~/.ssh/config alias) of a remote device."),
    _opt("--setup", is_flag=True, help="remote only: set the device's maximum power mode first (needs sudo)."),
    _opt("--inventory", default=None, help="remote only: device inventory file (format: "
         "deploy/inventory.example.json)."),
    _opt("--port", type=int, default=None, help="remote only: SSH port."),
    _opt("--identity", default=None, help="remote only: SSH private key file."),
    _opt("--known-hosts", default=None, help="remote only: known_hosts file to check the device's key against."),
    _opt("--accept-new-host-key", is_flag=True,
         help="remote only: accept an unknown host key on first contact (a changed key is still refused)."),
    _opt("--remote-python", default=None, help="remote only: the device's Python.  [default: python3]"),
    _opt("--docker", "docker_image", default=None, help="remote only: run the device program in this image."),
    _opt("--tegrastats", is_flag=True, help="remote only: sample board power while timing."),
])


# --- --config FILE ----------------------------------------------------------------------------------------


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML, YAML or JSON file as a dict (by its suffix)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                tomllib = require("tomli", "--config FILE.toml", "pip install tomli")
            doc = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            yaml = require("yaml", "--config FILE.yaml", "pip install pyyaml")
            doc = yaml.safe_load(text)
        elif suffix == ".json":
            doc = json.loads(text)
        else:
            raise ConfigError(f"--config {path}: unknown format {suffix or '(no suffix)'}; use .toml, .yaml or .json")
    except ConfigError:
        raise
    except Exception as exc:  # tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError
        first = " ".join(str(exc).split())[:200]
        raise ConfigError(f"--config {path} is not valid {suffix[1:].upper()} ({first})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--config {path} must hold a table of options, not {type(doc).__name__}")
    return doc


def options_for(doc: dict[str, Any], command: click.Command, source: str) -> dict[str, Any]:
    """The options for ``command`` in a config document, keyed by parameter name and checked against it."""
    name = str(command.name)
    recorded = doc.get("options")
    if isinstance(recorded, dict) and isinstance(recorded.get(name), dict):
        doc = recorded[name]  # summary.json / results.json: the resolved options of a run
    elif isinstance(doc.get(name), dict):
        doc = doc[name]
    by_key: dict[str, tuple[str, bool]] = {}  # a file key -> (parameter, whether it is a --no-X switch)
    for p in command.params:
        if not isinstance(p, click.Option) or not p.expose_value:
            continue
        by_key[str(p.name)] = (str(p.name), False)
        for flag in p.opts:
            by_key[flag.lstrip("-").replace("-", "_")] = (str(p.name), False)
        for flag in p.secondary_opts:
            by_key[flag.lstrip("-").replace("-", "_")] = (str(p.name), True)
    values = {}
    for key, value in doc.items():
        found = by_key.get(str(key).lstrip("-").replace("-", "_"))
        if found is None:
            if isinstance(value, dict):
                continue  # another command's table
            raise ConfigError(f"--config {source}: {key!r} is not an option of 'sqakd-edge {name}'; see "
                              f"'sqakd-edge {name} --help'")
        param, negated = found
        if negated and isinstance(value, bool):
            value = not value
        values[param] = tuple(value) if isinstance(value, list) else value
    return values


def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    path = Path(value).expanduser()
    values = options_for(read_config_file(path), ctx.command, str(path))
    ctx.default_map = {**(ctx.default_map or {}), **values}
    ctx.meta["sqakd_edge.config_file"] = str(path)


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config FILE``: the command's options from a file; flags given on the command line win."""
    return click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
                        callback=_load_config,
                        help="Options from a TOML, YAML or JSON file (top level, or a table named after the "
                             "command; a run's summary.json / results.json work too); flags override it.")(func)


def resolved_options(ctx: click.Context) -> dict[str, Any]:
    """The command's options as resolved (file, flags, defaults): what the run records to be repeated exactly."""
    options = {str(p.name) for p in ctx.command.params if isinstance(p, click.Option)}
    out = {}
    for key, value in ctx.params.items():
        if key not in options:
            continue  # arguments (an export directory...) are given on the command line each time
        out[key] = list(value) if isinstance(value, tuple) else (str(value) if isinstance(value, Path) else value)
    return out
