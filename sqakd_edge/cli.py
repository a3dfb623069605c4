"""The ``sqakd-edge`` command line.

Each command parses its flags into configs and calls one library function. Heavy imports (torch,
onnx, onnxruntime, matplotlib) happen inside the commands, so ``sqakd-edge --help`` stays fast.
A :class:`~sqakd_edge.errors.SqakdEdgeError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
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


@main.command("build")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True,
              help="int8 needs the QDQ graph (model.int8.onnx) and a GPU with fast INT8 (not the Jetson Nano).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="engine file.  [default: MODEL with suffix .PRECISION.engine]")
@click.option("--batch", type=int, default=1, show_default=True, help="batch size the engine is optimised for.")
@click.option("--workspace-mib", type=int, default=256, show_default=True, help="TensorRT builder workspace limit.")
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None,
              help="timing-cache file to reuse and update (faster rebuilds).")
def build(model: Path, precision: str, out: Path | None, batch: int, workspace_mib: int,
          timing_cache: Path | None) -> None:
    """Build a TensorRT engine from an exported ONNX graph, on the machine that will run it.

    Engines are tied to the GPU and the TensorRT version, so run this on the target (e.g. a Jetson), or let
    'sqakd-edge bench --device ...' build them there for you.

    Example: sqakd-edge build export/model.fp32.onnx --precision fp16
    """
    from .engine.build import build_engine

    built = build_engine(model, precision, out, batch=batch, workspace_mib=workspace_mib, timing_cache=timing_cache)
    click.echo(f"wrote {built.path} ({built.bytes} bytes, TensorRT {built.info['tensorrt']}, {precision})")


# ---------------------------------------------------------------------------------------------
# bench (issues: bench on this machine; on the device)
# ---------------------------------------------------------------------------------------------
