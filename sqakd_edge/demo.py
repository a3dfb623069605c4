"""``sqakd-edge demo``: the whole flow on the embedded Fashion-MNIST subset, on a laptop CPU.

teacher (float, labels) -> SQAKD student (no labels) -> export (INT8 QDQ ONNX + parity) -> bench
(ONNX Runtime, INT8 vs FP32) -> one summary table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import QuantConfig
from .train.recipes import get_recipe


@dataclass
class DemoResult:
    """Paths and numbers of a demo run."""

    out_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    bench: dict[str, Any] = field(default_factory=dict)


def model_size_bytes(model: Any) -> int:
    """Storage of the weights at their deployed precision: quantized layers at their weight bits, the rest FP32."""
    from .quant import iter_quant_layers

    quantized = {id(layer.weight): layer.weight_quantizer.bits for _, layer in iter_quant_layers(model)}
    bits = sum(p.numel() * quantized.get(id(p), 32) for name, p in model.named_parameters()
               if "quantizer." not in name)  # quantizer ranges are a handful of scalars per layer
    return (bits + 7) // 8


def run_demo(out_dir: str | Path, *, data: str = "embedded", model: str = "resnet20", quant: QuantConfig | None = None,
             teacher_epochs: int | None = None, student_epochs: int | None = None, force: bool = False,
             progress: bool = True, log: Callable[[str], None] = print) -> DemoResult:
    """Train a teacher and an SQAKD student, export and benchmark them, and summarise.

    Args:
        out_dir: folder for ``teacher/``, ``student/``, ``export/``, ``export/bench`` and ``summary.json``.
        data: dataset spec (default: the embedded Fashion-MNIST subset).
        model: architecture.
        quant: the student's quantization (default: LSQ W4A4, deployable grids).
        teacher_epochs: override the ``demo-fp`` recipe's epochs.
        student_epochs: override the ``demo`` recipe's epochs.
        force: replace an earlier demo in ``out_dir``.
        progress: progress bars.
        log: one-line messages.

    Returns:
        A :class:`DemoResult`.
    """
    from .checkpoint import build_model_from_checkpoint
    from .train import load_checkpoint, train_student, train_teacher

    out = Path(out_dir)
    quant = quant or QuantConfig(quantizer="lsq", backward="ste", wbits=4, abits=4)
    result = DemoResult(out)

    log("[1/4] float teacher (labels)")
    start = time.perf_counter()
    t_cfg = get_recipe("demo-fp").apply(epochs=teacher_epochs)
    teacher = train_teacher(data, out / "teacher", t_cfg, model=model, force=force, progress=progress, log=log)
    result.seconds["teacher"] = time.perf_counter() - start

    log(f"[2/4] SQAKD student {quant.tag} (no labels: KL to the teacher only)")
    start = time.perf_counter()
    s_cfg = get_recipe("demo").apply(epochs=student_epochs, method="sqakd")
    student = train_student(data, out / "student", s_cfg, quant, teacher_path=teacher.best_path, force=force,
                            progress=progress, log=log)
    result.seconds["student"] = time.perf_counter() - start

    for label, fit_result in (("FP32 teacher", teacher), (f"{quant.tag} student (SQAKD)", student)):
        ckpt = load_checkpoint(fit_result.best_path)
        row = next(r for r in ckpt["history"] if r["epoch"] == ckpt["best"]["epoch"])
        result.rows.append({"model": label, "test_acc": row.get("test_acc"),
                            "size_bytes": model_size_bytes(build_model_from_checkpoint(ckpt)),
                            "checkpoint": str(fit_result.best_path)})

    log("[3/4] export: INT8 QDQ ONNX for TensorRT (export/) and for ONNX Runtime on CPUs (export-cpu/), "
        "each checked against PyTorch")
    start = time.perf_counter()
    from .export.api import ExportConfig, export_checkpoint

    for folder, target in (("export", "tensorrt"), ("export-cpu", "onnxruntime")):
        # The demo shows parity instead of stopping on a miss. Under the ONNX Runtime target ORT rounds each
        # float conv bias onto its int32 grid (input scale x weight scale) to fuse QLinearConv, and a 4-bit
        # student can flip ~1-2% of top-1 decisions over it; export measures that and the summary says so.
        exported = export_checkpoint(student.best_path, out / folder,
                                     ExportConfig(int8=True, target=target, fail_on_parity_miss=False),
                                     teacher=teacher.best_path, data=data, force=force, log=log)
        result.parity[target] = {"line": exported.parity_line(), **exported.manifest.get("parity", {})}
        log(f"  {target}: {result.parity[target]['line']}")
    result.seconds["export"] = time.perf_counter() - start

    log("[4/4] bench on this CPU with ONNX Runtime: FP32 (teacher) vs INT8 (student), batch 1 and 32")
    start = time.perf_counter()
    from .bench.api import run_bench
    from .config import BenchConfig

    run = run_bench(out / "export-cpu", BenchConfig(batches=(1, 32), warmup_iters=5, iters=None, duration_s=8.0,
                                                      data=data, data_limit=1000),
                    out=out / "bench", show_progress=progress)
    result.bench = {"results": str(run.out_dir / "results.json"), "report": str(run.out_dir / "report.md"),
                    "plot": str(run.out_dir / "latency.png"), "speedups": run.document["speedups"],
                    "latency": {f"{r['name']}@{r['batch']}": r["latency_ms"]["median"]
                                for r in run.document["results"]},
                    "accuracy": {m["name"]: m["accuracy"] for m in run.document["models"] if m.get("accuracy")}}
    result.seconds["bench"] = time.perf_counter() - start
    _write_summary(result)
    return result


def _write_summary(result: DemoResult) -> None:
    from .atomic import atomic_write_text

    doc = {"rows": result.rows, "seconds": result.seconds, "parity": result.parity, "bench": result.bench}
    text = json.dumps(doc, indent=2)
    atomic_write_text(result.out_dir / "summary.json", text)


def format_summary(result: DemoResult) -> str:
    """The demo's final table."""
    lines = [f"{'model':<34} {'test acc':>9} {'weights':>10}", "-" * 55]
    for row in result.rows:
        acc = f"{row['test_acc'] * 100:.2f}%" if row.get("test_acc") is not None else "n/a"
        lines.append(f"{row['model']:<34} {acc:>9} {row['size_bytes'] / 1024:>8.1f} KB")
    if result.parity:
        lines.append("")
        lines.extend(f"parity, {target} graph: {parity['line']}" for target, parity in result.parity.items())
        from .export.api import bias_rounding_note

        note = bias_rounding_note(result.parity.get("onnxruntime", {}).get("int8", {}))
        if note:  # measured by export: the "on" run again without ORT's bias rounding
            lines.append(f"  ({note})")
    if result.bench:
        lines.append("")
        lines.append(f"{'ONNX Runtime, this CPU':<28} {'FP32 ms':>9} {'INT8 ms':>9} {'speed-up (95% CI)':>22}")
        lat = result.bench["latency"]
        for sp in result.bench["speedups"]:
            if sp["baseline"] != "fp32" or sp["candidate"] != "int8":
                continue
            b = sp["batch"]
            ci = f"{sp['ratio']:.2f}x [{sp['ci95'][0]:.2f}-{sp['ci95'][1]:.2f}]" + ("" if sp["trustworthy"] else " !")
            lines.append(f"{'batch ' + str(b):<28} {lat.get(f'fp32@{b}', float('nan')):>9.2f} "
                         f"{lat.get(f'int8@{b}', float('nan')):>9.2f} {ci:>22}")
        acc = result.bench.get("accuracy", {})
        if acc:
            lines.append("top-1 of the graphs on the test split: " + ", ".join(
                f"{name} {100 * a['top1']:.2f}%" for name, a in acc.items()))
        lines.append(f"report: {result.bench['report']}  plot: {result.bench['plot']}")
    total = sum(result.seconds.values())
    lines.append(f"time: {total:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()) + ")")
    return "\n".join(lines)
