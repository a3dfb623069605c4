"""The ``sqakd-edge`` command line.

Each command parses its flags into configs and calls one library function. Heavy imports (torch,
onnx, onnxruntime, matplotlib) happen inside the commands, so ``sqakd-edge --help`` stays fast.
A :class:`~sqakd_edge.errors.SqakdEdgeError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from . import __version__
from .errors import SqakdEdgeError


class _Group(click.Group):
    """Turns user errors into one line and exit code 2, and Ctrl-C into exit code 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SqakdEdgeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; finished outputs are kept, nothing half-written was left", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sqakd-edge")
def main() -> None:
    r"""SQAKD: label-free quantization-aware distillation, from training to an edge device.

    \b
    Flow:  train (--fp teacher, then SQAKD student) -> export --int8 -> bench
    Quick start:  sqakd-edge demo --out runs/demo
    """


# ---------------------------------------------------------------------------------------------
# train / demo (issue: SQAKD training end to end)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# export / check (issue: export --int8)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# build (issue: on the device)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# bench (issues: bench on this machine; on the device)
# ---------------------------------------------------------------------------------------------
