"""``run_bench``: the one library function behind ``sqakd-edge bench``.

It reads the export directory, prepares the inputs, lets a backend time the graphs (locally, or
on a device), computes the statistics and writes ``results.json``, ``report.md`` and
``latency.png``. Nothing is written until every measurement is done, and each file is written
atomically, so an interrupted bench leaves no half-written result.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json, atomic_write_text, prepare_output_dir
from ..config import BenchConfig
from ..errors import ConfigError
from .backend import Backend, BenchJob, LocalBackend
from .environment import collect_environment
from .export_dir import load_export_dir
from .inputs import data_batch, load_eval_data, random_batch
from .report import render_markdown
from .results import build_results, validate_results

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
PLOT_FILE = "latency.png"


@dataclass(frozen=True)
class BenchRun:
    """What :func:`run_bench` produced.

    Args:
        document: the results document (as written to ``results.json``).
        out_dir: the folder the files were written to.
        files: the files written, results last.
    """

    document: dict[str, Any]
    out_dir: Path
    files: tuple[Path, ...]


def _check_batch_fits(image_shape: tuple[int, int, int], batch: int) -> None:
    """Refuse a batch whose input alone would take more than a quarter of this machine's memory."""
    need = 4 * batch * image_shape[0] * image_shape[1] * image_shape[2]
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > total // 4:
        raise ConfigError(f"--batch {batch} needs {need / 2**30:.1f} GiB for its input alone (this machine has "
                          f"{total / 2**30:.0f} GiB, and the activations need several times more); use a smaller "
                          "--batch")


def prepare_job(export_dir: str | Path, config: BenchConfig, show_progress: bool | None = None) -> BenchJob:
    """Read the export directory and build the inputs every backend times on.

    Args:
        export_dir: the folder ``sqakd-edge export`` wrote.
        config: the settings.
        show_progress: draw progress bars (None: only on a terminal).

    Returns:
        The :class:`BenchJob`.

    Raises:
        ExportError: for a missing or broken export directory.
        DataError: when ``config.data`` cannot be read or does not fit the model.
    """
    bundle = load_export_dir(export_dir)
    _check_batch_fits(bundle.input_shape, max(config.batches))
    eval_data = load_eval_data(config.data, bundle, config.data_limit) if config.data else None
    inputs = {
        batch: data_batch(eval_data, batch) if eval_data is not None else random_batch(bundle.input_shape, batch,
                                                                                         config.seed)
        for batch in config.batches
    }
    return BenchJob(bundle, config, inputs, eval_data, show_progress)


def run_bench(
    export_dir: str | Path,
    config: BenchConfig,
    *,
    out: str | Path | None = None,
    backend: Backend | None = None,
    command: Sequence[str] | None = None,
    show_progress: bool | None = None,
    plot: bool = True,
    options: dict[str, Any] | None = None,
) -> BenchRun:
    """Benchmark an export directory's graphs and write the results, report and plot.

    Args:
        export_dir: the folder ``sqakd-edge export`` wrote (manifest.json + graphs).
        config: what to measure and how long.
        out: output folder; default ``EXPORT_DIR/bench``.
        backend: where to run; default :class:`LocalBackend` (ONNX Runtime and PyTorch on this machine).
        command: the command line, recorded in the results.
        show_progress: draw a progress bar (None: only on a terminal).
        plot: write ``latency.png`` (needs matplotlib).
        options: the resolved CLI options, recorded so ``--config results.json`` repeats the run.

    Returns:
        The :class:`BenchRun` with the results document.

    Raises:
        ConfigError: bad settings, or an output path that is a file.
        ExportError: a missing manifest, missing graphs, graphs with different input shapes.
        EngineError: a graph the runtime cannot load or run.
        DataError: unusable ``--data``.

    Example:
        >>> run_bench("runs/demo/export", BenchConfig(batches=(1, 32), threads=2))  # doctest: +SKIP
    """
    job = prepare_job(export_dir, config, show_progress)
    default = job.bundle.directory / "bench"
    existed = (Path(out) if out is not None else default).exists()
    out_dir = _results_dir(Path(out) if out is not None else None, default)
    runner = backend if backend is not None else LocalBackend()
    try:
        outcome = runner.run(job)
    except BaseException:
        if not existed:  # a failed run leaves no empty results folder behind
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    document = build_results(job, outcome, device_name=runner.name,
                             environment=collect_environment(config.resolved_threads), command=command,
                             options=options)
    problems = validate_results(document)
    assert not problems, problems  # internal invariant: build_results follows its own schema

    files: list[Path] = []
    if plot:
        from .plot import write_plot

        files.append(write_plot(document, out_dir / PLOT_FILE))
    files.append(atomic_write_text(out_dir / REPORT_FILE, render_markdown(document, PLOT_FILE if plot else None)))
    # results.json last: its presence means the run finished and every other file is from the same run.
    files.append(atomic_write_json(out_dir / RESULTS_FILE, document))
    return BenchRun(document, out_dir, tuple(files))


def _results_dir(given: Path | None, default: Path) -> Path:
    """The results folder, checked before anything is timed: writable, and the default never a planted link."""
    out_dir = given if given is not None else default
    if given is None and out_dir.is_symlink():
        raise ConfigError(f"{out_dir} is a link ({os.readlink(out_dir)}); results are not written through a link "
                          "there: remove it or pass --out FOLDER")
    prepare_output_dir(out_dir, "the results (results.json, report.md, latency.png)")
    return out_dir
