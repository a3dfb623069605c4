"""torch.fx graph helpers that quantization and export both use.

Quantization needs the graph to find what it may quantize (the weighted layers the forward calls, in call
order, and the residual Adds); export needs it to fold BatchNorms and place Q/DQ. Both read it through these
helpers, which know nothing about quantizers: a module class marks itself with ``fx_leaf = True`` to stay
one call in the graph (quant layers, quantizers and folded layers do, since their forwards branch on
first-batch state), and with ``holds_integer_weights = True`` when its weights are quantized.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import fx, nn

from .errors import SqakdEdgeError, first_line

_ADD_TARGETS = (operator.add, operator.iadd, torch.add)
BN_TYPES = (nn.BatchNorm2d,)
WEIGHTED_TYPES = (nn.Conv2d, nn.Linear)


class TraceFailure(SqakdEdgeError):
    """fx cannot trace a model (the message names the module whose forward stopped it, and why)."""

    def __init__(self, message: str, module_path: str | None, reason: str) -> None:
        super().__init__(message)
        self.module_path = module_path
        self.reason = reason


class _LeafTracer(fx.Tracer):
    """fx tracer that keeps ``fx_leaf`` modules as single calls and remembers where tracing is."""

    def __init__(self) -> None:
        super().__init__()
        self.path: list[str] = []
        self.failed_at: str | None = None  # the innermost module whose forward raised

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if getattr(type(m), "fx_leaf", False):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward, args, kwargs):  # type: ignore[no-untyped-def,override]
        self.path.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_at is None:
                self.failed_at = self.path[-1]
            raise
        finally:
            self.path.pop()


def trace(model: nn.Module) -> fx.GraphModule:
    """A ``torch.fx`` GraphModule of ``model`` with ``fx_leaf`` modules (quant layers...) as single calls.

    Raises:
        TraceFailure: fx cannot trace the forward (e.g. Python control flow on tensor values); the message
            names the innermost module being traced and fx's reason.
    """
    tracer = _LeafTracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, NotImplementedError, ...)
        reason = first_line(exc)
        where = tracer.failed_at or None
        at = f"in the forward of {where} ({type(model.get_submodule(where)).__name__})" if where else \
            f"in {type(model).__name__}.forward"
        raise TraceFailure(
            f"torch.fx cannot trace {type(model).__name__}: stopped {at}: {reason}; sqakd-edge finds the layers "
            "to quantize, the BatchNorms to fold and the residual Adds on an fx graph, so the forward must be "
            "fx-traceable (no Python control flow on tensor values; see torch.fx's limitations, or wrap that "
            "part in a function marked with torch.fx.wrap)", where, reason) from None
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


def set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path ``target``."""
    parent_name, _, attr = target.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


def module_calls(graph: fx.Graph) -> dict[str, int]:
    """How many times the graph calls each submodule (by qualified name)."""
    counts: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            counts[str(node.target)] = counts.get(str(node.target), 0) + 1
    return counts


def foldable_batchnorms(gm: fx.GraphModule) -> dict[fx.Node, fx.Node]:
    """BatchNorm node -> the Conv2d node before it, for each BatchNorm a conv folds into.

    The conv is called once and its output feeds nothing but that BatchNorm (quant convs are Conv2d subclasses).
    """
    modules = dict(gm.named_modules())
    calls = module_calls(gm.graph)
    pairs: dict[fx.Node, fx.Node] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[str(node.target)], BN_TYPES):
            continue
        prev = node.args[0]
        if not isinstance(prev, fx.Node) or prev.op != "call_module":
            continue
        if isinstance(modules[str(prev.target)], nn.Conv2d) and len(prev.users) == 1 and calls[str(prev.target)] == 1:
            pairs[node] = prev
    return pairs


def called_modules(gm: fx.GraphModule, types: tuple[type[nn.Module], ...]) -> list[str]:
    """Names of the submodules of ``types`` that the graph calls, in call order (each once)."""
    modules = dict(gm.named_modules())
    seen: dict[str, None] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(str(node.target)), types):
            seen.setdefault(str(node.target), None)
    return list(seen)


def is_add(node: fx.Node) -> bool:
    """Whether ``node`` adds two tensors (``a + b``, ``a += b``, ``torch.add``, ``a.add(b)``)."""
    if node.op == "call_function" and node.target in _ADD_TARGETS:
        return len(node.args) == 2 and all(isinstance(a, fx.Node) for a in node.args)
    if node.op == "call_method" and node.target in ("add", "add_"):
        return len(node.args) == 2 and all(isinstance(a, fx.Node) for a in node.args)
    return False


def holds_integer_weights(module: nn.Module | None) -> bool:
    """Whether ``module`` is a quant layer (student or folded): a Conv/Linear with quantized weights."""
    return bool(getattr(type(module), "holds_integer_weights", False))


def is_weighted_output(node: fx.Node, modules: dict[str, nn.Module], *, quantized_only: bool = False) -> bool:
    """Whether ``node`` is the output of a Conv/Linear, possibly through a BatchNorm.

    Args:
        node: a graph node.
        modules: the graph module's named modules.
        quantized_only: count only quant layers (student or folded), not float ones.
    """
    if node.op != "call_module":
        return False
    m = modules[str(node.target)]
    if isinstance(m, BN_TYPES) and isinstance(node.args[0], fx.Node):
        return is_weighted_output(node.args[0], modules, quantized_only=quantized_only)
    if holds_integer_weights(m):
        return True
    return not quantized_only and isinstance(m, WEIGHTED_TYPES)


def residual_skips(gm: fx.GraphModule, *, quantized_only: bool = False) -> Iterator[tuple[fx.Node, int]]:
    """``(add_node, skip_arg_index)`` for every residual Add: one input from a weighted layer, one skip.

    When both inputs come from weighted layers (a projection shortcut), the second is the skip (that is
    how torchvision's and our blocks write ``out + identity``). Adds of two non-weighted tensors are not
    residual Adds.

    Args:
        gm: a traced model.
        quantized_only: only Adds whose weighted input is a quant layer (float convs need no skip Q/DQ).
    """
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if not is_add(node):
            continue
        weighted = [is_weighted_output(a, modules, quantized_only=quantized_only) for a in node.args]
        if weighted[0]:
            yield node, 1
        elif weighted[1]:
            yield node, 0


def relu_input(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[fx.Node, bool] | None:
    """``(input, in_place)`` when ``node`` is a ReLU of one graph value (``F.relu``, ``nn.ReLU``, ``x.relu_()``...)."""
    if node.op == "call_module" and type(modules.get(str(node.target))) is nn.ReLU:
        in_place = bool(modules[str(node.target)].inplace)  # type: ignore[union-attr]
    elif node.op == "call_function" and node.target in (F.relu, torch.relu, torch.relu_):
        in_place = node.target is torch.relu_ or bool(node.kwargs.get("inplace", node.args[1:2] == (True,)))
    elif node.op == "call_method" and node.target in ("relu", "relu_"):
        in_place = node.target == "relu_"
    else:
        return None
    source = node.args[0] if node.args else node.kwargs.get("input")
    return (source, in_place) if isinstance(source, fx.Node) else None


_PASS_NONNEG_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten)
_PASS_NONNEG_FUNCTIONS = (F.adaptive_avg_pool2d, F.avg_pool2d, F.max_pool2d, F.adaptive_max_pool2d, torch.flatten)


def is_nonnegative(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node``'s values are known to be >= 0 (a ReLU output, or a pooling/flatten/quantizer of one)."""
    if node.op == "call_module":
        m = modules[str(node.target)]
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            return True
        # a quantizer's grid holds 0 and rounding is monotone: it keeps values >= 0
        if isinstance(m, _PASS_NONNEG_MODULES) or getattr(type(m), "keeps_sign", False):
            return isinstance(node.args[0], fx.Node) and is_nonnegative(node.args[0], modules)
        return False
    if node.op == "call_function":
        if node.target in (F.relu, torch.relu, F.relu6):
            return True
        if node.target in _PASS_NONNEG_FUNCTIONS:
            return isinstance(node.args[0], fx.Node) and is_nonnegative(node.args[0], modules)
        return False
    if node.op == "call_method":
        if node.target in ("relu", "relu_"):
            return True
        if node.target in ("flatten", "view", "reshape", "mean"):
            return isinstance(node.args[0], fx.Node) and is_nonnegative(node.args[0], modules)
    return False
