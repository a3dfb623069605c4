"""One family of user-facing errors.

Every error a user can cause (bad flags, bad files, bad data, an unreachable device) is a
`SqakdEdgeError`. The CLI turns it into one line on stderr and exit code 2, never a traceback.
Messages say what was wrong, what is allowed, and what to do.
"""

from __future__ import annotations

import re


class SqakdEdgeError(Exception):
    """Base class of every error caused by user input or the environment."""

    exit_code = 2


class ConfigError(SqakdEdgeError):
    """An invalid setting: a flag value, a recipe, a model or quantizer name."""


class DataError(SqakdEdgeError):
    """A dataset that is missing, malformed, empty or mismatched with the model."""


class CheckpointError(SqakdEdgeError):
    """A checkpoint that is missing, corrupt, foreign or of the wrong kind."""


class TrainingError(SqakdEdgeError):
    """Training cannot go on (e.g. the loss became NaN)."""


class ExportError(SqakdEdgeError):
    """A model that cannot be exported as asked, or an export that failed its checks."""


class EngineError(SqakdEdgeError):
    """A runtime (ONNX Runtime, TensorRT) that cannot load or run a graph."""


class RemoteError(SqakdEdgeError):
    """A remote device that cannot be reached or that failed while running."""


class MissingDependencyError(SqakdEdgeError):
    """An optional dependency needed by the feature in use is not installed."""

    def __init__(self, module: str, feature: str, install: str) -> None:
        super().__init__(
            f"{feature} needs the Python package '{module}', which is not installed; install it with: {install}"
        )
        self.module = module


def require(module: str, feature: str, install: str | None = None):  # noqa: ANN201 - returns a module
    """Import an optional dependency, or raise a one-line error with the install command.

    Args:
        module: the module to import, e.g. ``"onnxruntime"``.
        feature: what needs it, for the message, e.g. ``"sqakd-edge bench"``.
        install: the install command; defaults to ``pip install <module>``.

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: when the import fails.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module, feature, install or f"pip install {module}") from exc


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]")


def first_line(exc: BaseException, limit: int = 200, *, typed: bool = False) -> str:
    """The first line of an exception's message, for a one-line error that wraps it.

    Terminal control sequences are removed and the line is bounded; an empty message gives the exception's
    type name. ``typed`` prefixes the type (``OSError: ...``) where the type is part of the explanation.
    """
    text = _ANSI.sub("", (str(exc).strip().splitlines() or [""])[0]).strip()[:limit]
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}" if typed else text
