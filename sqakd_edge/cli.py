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
from .cli_options import (
    BATCHES,
    CONTRACT,
    INPUT_SHAPE,
    QUANT_CORE,
    QUANT_LAYOUT,
    REMOTE,
    TRAINING_OVERRIDES,
    config_option,
    quant_config,
    resolved_options,
)
from .config import METHODS, PRECISIONS, TARGETS
from .errors import ConfigError, SqakdEdgeError


class _Group(click.Group):
    """Turns user errors into one line and exit code 2, and Ctrl-C into exit code 130.

    A command's usage errors (an unknown option, a bad choice, a missing argument) are one line too, naming
    the command's ``--help``, instead of click's usage block.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SqakdEdgeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            sub = exc.ctx.info_name if exc.ctx is not None and exc.ctx.parent is not None else None
            command = f"sqakd-edge {sub}" if sub else "sqakd-edge"  # the name users type, also under `python -m`
            message = " ".join(exc.format_message().split())
            click.echo(f"error: {message} (see '{command} --help')", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted; finished outputs are kept, nothing half-written was left", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110,
                                          "terminal_width": 110})
@click.version_option(__version__, prog_name="sqakd-edge")
def main() -> None:
    """SQAKD: label-free quantization-aware distillation, from training to an edge device.

    \b
    Flow:  train (--fp teacher, then SQAKD student) -> export --int8 -> bench
    Quick start:  sqakd-edge demo --out runs/demo
    """


# ---------------------------------------------------------------------------------------------
# train / demo
# ---------------------------------------------------------------------------------------------

_TRAIN_EXAMPLES = """
\b
Examples:
  # your own model: a torchvision ResNet-50 you fine-tuned (a state_dict) + a folder of unlabeled photos
  sqakd-edge train --model torchvision:resnet50 --teacher my_resnet50.pt --data unlabeled:~/photos \\
      --input-size 224 --out runs/r50-w4a4
  # your own nn.Module: a builder function in your file (or module:package.module:FUNCTION)
  sqakd-edge train --model file:my_net.py:build --teacher my_net.pt --data unlabeled:~/photos --input-size 96 \\
      --out runs/mine
  # 1. a float teacher, with labels
  sqakd-edge train --fp --data embedded --model resnet20 --out runs/teacher
  # 2. an SQAKD W4A4 student: no labels, the teacher's KL only
  sqakd-edge train --teacher runs/teacher/best.pt --data embedded --quantizer lsq --wbits 4 --abits 4 --out runs/w4a4
  # the same from a folder of unlabeled images, EWGS backward, 2 bits
  sqakd-edge train --teacher runs/teacher/best.pt --data unlabeled:~/images --quantizer interval --backward ewgs \\
      --wbits 2 --abits 2 --out runs/w2a2
  # continue an interrupted run; list the recipes; list the models
  sqakd-edge train --teacher runs/teacher/best.pt --data embedded --out runs/w4a4 --resume
  sqakd-edge train --list-recipes
  sqakd-edge models
"""

_DATA_HELP = ("embedded | fashion-mnist[:PATH] | cifar10:PATH | cifar100:PATH | tiny-imagenet:PATH | folder:PATH "
              "(class subfolders, or unlabeled) | unlabeled:PATH (a folder read without labels)")
_MODEL_HELP = ("Model source: a registered name (sqakd-edge models), torchvision:NAME[?key=value&...], "
               "file:PATH.py:FUNCTION or module:package.module:FUNCTION (your builder returning an nn.Module). "
               "With --teacher WEIGHTS: the architecture of those weights.")


def _list_recipes(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from .train.recipes import describe_recipes

        click.echo(describe_recipes())
        ctx.exit()


def _contract_request(input_size: tuple[int, int] | None, in_channels: int | None, num_classes: int | None,
                      mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> Any:
    from .models.resolve import ContractRequest

    return ContractRequest(num_classes=num_classes, in_channels=in_channels, size=input_size, mean=mean, std=std)


@main.command(epilog=_TRAIN_EXAMPLES)
@click.option("--list-recipes", is_flag=True, expose_value=False, is_eager=True, callback=_list_recipes,
              help="Print the named recipes and exit.")
@click.option("--fp", "float_teacher", is_flag=True, help="Train a float teacher (with labels).")
@click.option("--teacher", type=click.Path(dir_okay=False),
              help="Teacher: a sqakd-edge float checkpoint, or your model's weights (a state_dict file) with --model.")
@click.option("--random-teacher", is_flag=True,
              help="With --model: a teacher with random weights, to test the pipeline (its accuracy means nothing).")
@click.option("--data", default="embedded", show_default=True, help=_DATA_HELP)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (checkpoints, metrics).")
@click.option("--model", help=_MODEL_HELP + " [default for --fp: resnet20]")
@CONTRACT
@click.option("--method", type=click.Choice([m for m in METHODS if m != "fp"]), default="sqakd", show_default=True,
              help="Student loss: sqakd (no labels), ce (labels), ce+kd (both).")
@QUANT_CORE
@QUANT_LAYOUT
@click.option("--recipe", help="Named settings (see --list-recipes). [default: demo-fp for --fp, demo for students]")
@TRAINING_OVERRIDES
@click.option("--workers", type=int, help="Data-loader worker processes.")
@click.option("--skip-corrupt", is_flag=True, help="Skip unreadable images (counted in one warning) instead of "
              "stopping at the first.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--force", is_flag=True, help="Replace a run already in --out.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@config_option
def train(**params: Any) -> None:
    """Train a float teacher (--fp) or an SQAKD/QAT student (--teacher CKPT, or --model with your weights)."""
    from .train.distributed import finish_distributed, init_distributed

    if params["float_teacher"] and (params["teacher"] is not None or params["random_teacher"]):
        raise ConfigError("pass either --fp (train a float teacher) or a teacher for a student, not both")
    if not params["float_teacher"] and params["teacher"] is None and not params["random_teacher"]:
        raise ConfigError("pass exactly one of --fp (train a float teacher) or --teacher CKPT (train a student; "
                          "your own weights with --model SOURCE, or --random-teacher to test the pipeline)")
    info = init_distributed()
    params["_options"] = resolved_options(click.get_current_context())
    try:
        _train(info, params)
    except SqakdEdgeError as exc:
        if not info.enabled:
            raise
        # Say it before waiting for the other ranks: torchrun stops every rank once one has exited.
        click.echo(f"error: {exc}", err=True)
        finish_distributed(info, completed=False)
        sys.exit(exc.exit_code)
    except BaseException:
        finish_distributed(info, completed=False)
        raise
    finish_distributed(info, completed=True)




def _train(info: Any, p: dict[str, Any]) -> None:
    from .train.recipes import get_recipe

    log = click.echo if info.is_main else (lambda _msg: None)
    overrides = {k: p[k] for k in TRAINING_OVERRIDES.names}
    overrides["num_workers"] = p["workers"]
    request = _contract_request(p["input_size"], p["in_channels"], p["num_classes"], p["mean"], p["std"])
    common = {"resume": p["resume"], "force": p["force"], "progress": not p["no_progress"], "dist_info": info,
              "log": log, "skip_corrupt": p["skip_corrupt"], "request": request,
              "options": {"train": p["_options"]}}
    if p["float_teacher"]:
        chosen = get_recipe(p["recipe"] or "demo-fp")
        chosen.check_fits(p["data"], teacher=True)
        config = chosen.apply(**overrides, method="fp")
        from .train import train_teacher

        result = train_teacher(p["data"], p["out"], config, model=p["model"] or "resnet20", **common)
    else:
        quant = quant_config(p)
        chosen = get_recipe(p["recipe"] or "demo")
        chosen.check_fits(p["data"], teacher=False)
        config = chosen.apply(**overrides, method=p["method"])
        from .train import train_student

        result = train_student(p["data"], p["out"], config, quant, teacher_path=p["teacher"], model=p["model"],
                               random_teacher=p["random_teacher"], **common)
    if info.is_main:
        _print_fit_summary(result)


@main.command("models")
def models_command() -> None:
    """List the model sources: registered models, and torchvision's classification builders."""
    from .models import list_models, model_spec
    from .models.sources import torchvision_classifiers

    click.echo("registered (the paper's models; --model NAME):")
    for name in list_models():
        spec = model_spec(name)
        click.echo(f"  {name:<20} {spec.family}, {spec.input_size}x{spec.input_size} input")
    names = torchvision_classifiers()
    click.echo(f"torchvision (--model torchvision:NAME, builder arguments as ?key=value&...; {len(names)}):")
    for i in range(0, len(names), 5):
        click.echo("  " + "".join(f"{n:<22}" for n in names[i:i + 5]).rstrip())
    click.echo("your own: --model file:PATH.py:FUNCTION or module:package.module:FUNCTION (returns an nn.Module); "
               "weights with --teacher WEIGHTS.pt (a state_dict)")


def _print_fit_summary(result: Any) -> None:
    last = result.history[-1] if result.history else {}
    best = result.best
    click.echo(f"done in {result.seconds:.0f} s; best epoch {best.get('epoch')} by {best.get('metric')} "
               f"({best.get('score', float('nan')):.4f}); checkpoints: {result.best_path}, {result.last_path}")
    if "test_acc" in last:
        click.echo(f"test accuracy (last epoch): {last['test_acc'] * 100:.2f}%  — labels only measured, never used "
                   "for selection under sqakd")


@main.command()
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--data", default="embedded", show_default=True, help="Dataset spec (see 'train --help').")
@click.option("--model", default="resnet20", show_default=True)
@QUANT_CORE
@click.option("--teacher-epochs", type=int, help="Override the demo-fp recipe's epochs.")
@click.option("--student-epochs", type=int, help="Override the demo recipe's epochs.")
@click.option("--force", is_flag=True, help="Replace an earlier demo in --out.")
@click.option("--no-progress", is_flag=True)
@config_option
def demo(out: str, data: str, model: str, quantizer: str, backward: str, wbits: int, abits: int,
         teacher_epochs: int | None, student_epochs: int | None, force: bool, no_progress: bool) -> None:
    """Teacher -> SQAKD student -> INT8 export -> bench, on the embedded data (about 10 minutes on 2 cores)."""
    from .config import QuantConfig
    from .demo import format_summary, run_demo

    quant = QuantConfig(quantizer=quantizer, backward=backward, wbits=wbits, abits=abits)
    result = run_demo(out, data=data, model=model, quant=quant, teacher_epochs=teacher_epochs,
                      student_epochs=student_epochs, force=force, progress=not no_progress, log=click.echo)
    click.echo("")
    click.echo(format_summary(result))
    click.echo(f"outputs: {result.out_dir} (summary.json)")


# ---------------------------------------------------------------------------------------------
# export / check
# ---------------------------------------------------------------------------------------------

_EXPORT_EXAMPLES = """
\b
Examples:
  # QDQ ONNX for TensorRT (symmetric int8), the teacher as the float baseline, parity on the test set
  sqakd-edge export runs/w4a4/best.pt --int8 --teacher runs/teacher/best.pt --data embedded --out runs/w4a4/export
  # for ONNX Runtime on x86 (uint8 activations: its fast integer kernels)
  sqakd-edge export runs/w4a4/best.pt --int8 --target onnxruntime --out runs/w4a4/export-ort
  # check any ONNX file against TensorRT's Q/DQ rules
  sqakd-edge check runs/w4a4/export/model.int8.onnx
"""


@main.command(epilog=_EXPORT_EXAMPLES)
@click.argument("checkpoint", type=click.Path())
@click.option("--int8", "int8", is_flag=True, help="Also write the QDQ graph model.int8.onnx (student checkpoints).")
@click.option("--out", required=True, type=click.Path(), help="Export directory to write.")
@click.option("--target", type=click.Choice(TARGETS), default="tensorrt", show_default=True,
              help="tensorrt: symmetric int8 Q/DQ; onnxruntime: uint8 activations for its x86 integer kernels.")
@click.option("--opset", type=int, default=13, show_default=True, help="ONNX opset (TensorRT 8.2 reads up to 13).")
@click.option("--input-shape", type=INPUT_SHAPE,
              help="NxCxHxW of the input (batch is dynamic). [default: from the checkpoint]")
@click.option("--data", help="Dataset for the parity check (see 'train --help'). [default: the checkpoint's data, "
              "else embedded]")
@click.option("--parity-samples", type=int, default=256, show_default=True, help="Inputs for the int8 parity check.")
@click.option("--teacher", type=click.Path(),
              help="Float teacher checkpoint for model.fp32.onnx. [default: the student with quantizers off]")
@click.option("--allow-requantize", is_flag=True,
              help="Re-quantize grids that do not fit the target to the nearest int8 grid (parity shows the cost).")
@click.option("--residual-qdq", is_flag=True,
              help="TensorRT: Q/DQ on residual skip branches so Adds fuse (not exact: the student's skips are float).")
@click.option("--min-top1-off", type=float, default=0.999, show_default=True,
              help="Minimum top-1 agreement with ORT graph optimisations off.")
@click.option("--min-top1-on", type=float, default=0.99, show_default=True,
              help="Minimum top-1 agreement with ORT graph optimisations on.")
@click.option("--no-parity-fail", is_flag=True, help="Write the export even when parity misses (manifest says so).")
@click.option("--threads", type=int, default=0, show_default=True,
              help="CPU threads for the parity runs (0: library defaults; 1 on a busy shared machine).")
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
@config_option
def export(checkpoint: str, int8: bool, out: str, target: str, opset: int,
           input_shape: tuple[int, int, int, int] | None, data: str | None,
           parity_samples: int, teacher: str | None, allow_requantize: bool, residual_qdq: bool, min_top1_off: float,
           min_top1_on: float, no_parity_fail: bool, threads: int, force: bool) -> None:
    """Export a checkpoint to ONNX (float, and QDQ int8 with --int8), lint it and check parity."""
    from .config import ExportConfig
    from .export.api import export_checkpoint

    config = ExportConfig(int8=int8, target=target, opset=opset, input_shape=input_shape,
                          parity_samples=parity_samples, allow_requantize=allow_requantize, residual_qdq=residual_qdq,
                          min_top1_off=min_top1_off, min_top1_on=min_top1_on, fail_on_parity_miss=not no_parity_fail,
                          threads=threads)
    result = export_checkpoint(checkpoint, out, config, teacher=teacher, data=data, force=force, log=click.echo)
    if not result.passed:
        click.echo("parity below threshold (written because of --no-parity-fail)", err=True)
        sys.exit(1)


@main.command()
@click.argument("model", type=click.Path())
@click.option("--target", type=click.Choice(TARGETS), default="tensorrt", show_default=True,
              help="Rules to check: TensorRT's explicit-quantization rules, or what ONNX Runtime needs.")
def check(model: str, target: str) -> None:
    """Check an ONNX file against TensorRT's Q/DQ rules; exit code 1 on errors."""
    from .export.lint import lint_file

    findings = lint_file(model, target)
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    for f in findings:
        click.echo(f.line())
    click.echo(f"{model}: {errors} error(s), {warnings} warning(s) against the {target} rules")
    if errors:
        sys.exit(1)



# ---------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------


@main.command("build")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp16", show_default=True,
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
# bench
# ---------------------------------------------------------------------------------------------


def _bench_command_line(export_dir: Path, params: dict[str, Any]) -> list[str]:
    """The command as run, rebuilt from the parsed flags (recorded in results.json)."""
    line = ["sqakd-edge", "bench", str(export_dir)]
    for name, value in params.items():
        if name == "export_dir" or value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        line += [flag] if value is True else [flag, text]
    return line


@main.command("bench")
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--device", default="local", show_default=True,
              help="where to run: 'local' (ONNX Runtime and PyTorch on this machine) or a device name.")
@REMOTE
@click.option("--batch", type=BATCHES, default="1", show_default=True, help="batch sizes, comma-separated, e.g. 1,32.")
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
@config_option
def bench(export_dir: Path, device: str, batch: tuple[int, ...], threads: int | None, warmup: int,
          iters: int | None, duration: float | None, round_iters: int, graphs: str | None, data: str | None,
          data_limit: int | None, seed: int, out: Path | None, no_plot: bool, quiet: bool, **remote: Any) -> None:
    """Benchmark an export's FP32 and INT8 graphs (and the PyTorch model) with honest statistics.

    Writes results.json, report.md and latency.png and prints a table; the speed-up is the ratio of
    median latencies with a bootstrap 95% confidence interval.

    Example: sqakd-edge bench runs/demo/export --batch 1,32 --threads 2 --data embedded
    """
    from .bench.api import run_bench
    from .bench.report import render_console
    from .config import BenchConfig

    params = click.get_current_context().params
    config = BenchConfig(
        batches=batch, threads=threads, warmup_iters=warmup,
        iters=iters if iters is not None or duration is not None else 100, duration_s=duration,
        round_iters=round_iters, seed=seed,
        graphs=tuple(g.strip() for g in graphs.split(",") if g.strip()) if graphs is not None else None,
        data=data, data_limit=data_limit,
    )
    backend = None
    if device != "local":
        from .bench.remote import make_backend

        backend = make_backend(device=device, host=remote["host"], setup=remote["setup"], inventory=remote["inventory"],
                               port=remote["port"], identity_file=remote["identity"],
                               known_hosts_file=remote["known_hosts"],
                               accept_new_host_key=remote["accept_new_host_key"],
                               remote_python=remote["remote_python"], docker_image=remote["docker_image"],
                               tegrastats=remote["tegrastats"])
    elif REMOTE.given(remote):
        raise ConfigError(f"{', '.join(REMOTE.given(remote))} are for a remote --device; drop them for --device local")
    result = run_bench(export_dir, config, out=out, backend=backend, command=_bench_command_line(export_dir, params),
                       show_progress=False if quiet else None, plot=not no_plot,
                       options={"bench": resolved_options(click.get_current_context())})
    if not quiet:
        click.echo(render_console(result.document))
    click.echo(f"wrote {', '.join(str(p) for p in result.files)}")
