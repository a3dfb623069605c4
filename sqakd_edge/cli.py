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
from .errors import ConfigError, SqakdEdgeError


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


def _bench_command_line(export_dir: Path, params: dict[str, Any]) -> list[str]:
    """The command as run, rebuilt from the parsed flags (recorded in results.json)."""
    line = ["sqakd-edge", "bench", str(export_dir)]
    for name, value in params.items():
        if name == "export_dir" or value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        line += [flag] if value is True else [flag, str(value)]
    return line


@main.command("bench")
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--device", default="local", show_default=True,
              help="where to run: 'local' (ONNX Runtime and PyTorch on this machine) or a device name.")
@click.option("--host", default=None, help="USER@HOST (or an ~/.ssh/config alias) of a remote device.")
@click.option("--setup", is_flag=True, help="remote only: set the device's maximum power mode first (needs sudo).")
@click.option("--batch", default="1", show_default=True, help="batch sizes, comma-separated, e.g. 1,32.")
@click.option("--threads", type=int, default=None, help="intra-op CPU threads.  [default: one per logical CPU]")
@click.option("--warmup", type=int, default=10, show_default=True,
              help="untimed warm-up ITERATIONS per model and batch size.")
@click.option("--iters", type=int, default=None, help="timed ITERATIONS per model and batch size.  [default: 100]")
@click.option("--duration", type=float, default=None,
              help="instead of --iters: SECONDS of timed rounds per batch size, shared by all models.")
@click.option("--round-iters", type=int, default=10, show_default=True,
              help="iterations a model runs before the next takes its turn (rounds alternate to cancel drift).")
@click.option("--graphs", default=None, help="which to run, comma-separated: fp32,int8,eager.  [default: all at hand]")
@click.option("--data", default=None, help="dataset spec (e.g. 'embedded'): real inputs and top-1 per model.")
@click.option("--data-limit", type=int, default=None, help="use at most this many test images for accuracy.")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of random inputs and the bootstrap.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="folder for results.json, report.md, latency.png.  [default: EXPORT_DIR/bench]")
@click.option("--no-plot", is_flag=True, help="skip latency.png.")
@click.option("--quiet", is_flag=True, help="no progress bar and no console table.")
def bench(export_dir: Path, device: str, host: str | None, setup: bool, batch: str, threads: int | None, warmup: int,
          iters: int | None, duration: float | None, round_iters: int, graphs: str | None, data: str | None,
          data_limit: int | None, seed: int, out: Path | None, no_plot: bool, quiet: bool) -> None:
    """Benchmark an export's FP32 and INT8 graphs (and the PyTorch model) with honest statistics.

    Writes results.json, report.md and latency.png and prints a table; the speed-up is the ratio of
    median latencies with a bootstrap 95% confidence interval.

    Example: sqakd-edge bench runs/demo/export --batch 1,32 --threads 2 --data embedded
    """
    from .bench.api import run_bench
    from .bench.report import render_console
    from .bench.settings import BenchConfig, parse_batches

    params = click.get_current_context().params
    config = BenchConfig(
        batches=parse_batches(batch), threads=threads, warmup_iters=warmup,
        iters=iters if iters is not None or duration is not None else 100, duration_s=duration,
        round_iters=round_iters, seed=seed,
        graphs=tuple(g.strip() for g in graphs.split(",") if g.strip()) if graphs is not None else None,
        data=data, data_limit=data_limit,
    )
    backend = None
    if device != "local":
        import importlib

        try:
            remote = importlib.import_module("sqakd_edge.bench.remote")
        except ModuleNotFoundError as exc:
            if exc.name != "sqakd_edge.bench.remote":
                raise
            raise ConfigError(f"--device {device}: remote benchmarking is not part of this sqakd-edge; "
                              "use --device local") from None
        # The device path's hook: make_backend(...) returns a bench.backend.Backend.
        backend = remote.make_backend(device=device, host=host, setup=setup)
    elif host is not None or setup:
        raise ConfigError("--host and --setup are for a remote --device; drop them for --device local")
    result = run_bench(export_dir, config, out=out, backend=backend, command=_bench_command_line(export_dir, params),
                       show_progress=False if quiet else None, plot=not no_plot)
    if not quiet:
        click.echo(render_console(result.document))
    click.echo(f"wrote {', '.join(str(p) for p in result.files)}")
