"""The results document: schema, speed-up pairs, the eager baseline, accuracy, and the README's field table."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sqakd_edge.bench.api import prepare_job, run_bench
from sqakd_edge.bench.backend import LocalBackend
from sqakd_edge.bench.environment import cpu_facts, git_state
from sqakd_edge.bench.inputs import EvalData
from sqakd_edge.bench.report import render_console, render_markdown
from sqakd_edge.bench.results import FIELDS, build_results, validate_results
from sqakd_edge.config import BenchConfig

from .bench_fixtures import TinyNet, cached_export, copy_export, tiny_model, write_manifest

REPO = Path(__file__).resolve().parents[1]
CONFIG = BenchConfig(batches=(1, 3), threads=1, warmup_iters=1, iters=6, round_iters=3)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return cached_export(tmp_path_factory)


@pytest.fixture(scope="module")
def document(export, tmp_path_factory):
    return run_bench(export, CONFIG, out=tmp_path_factory.mktemp("out"), plot=False, show_progress=False).document


def state_dict_loader(path: Path):
    """Stands in for the checkpoint module (written in parallel): a real TinyNet from a real state_dict file."""

    def load():
        model = TinyNet()
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()

    return load


def test_document_is_valid_and_round_trips_json(document):
    assert validate_results(document) == []
    assert validate_results(json.loads(json.dumps(document))) == []


@pytest.mark.parametrize("mutate, problem", [
    (lambda d: d["results"][0].pop("latency_ms"), "missing field results[].latency_ms"),
    (lambda d: d["results"][1].update(batch=True), "results[].batch has type bool"),
    (lambda d: d["speedups"][0].update(ratio="fast"), "speedups[].ratio has type str"),
    (lambda d: d["settings"].pop("threads"), "missing field settings.threads"),
    (lambda d: d.update(models={}), "models has type dict"),
    (lambda d: d.update(schema_version=2), "not a sqakd-edge.bench-results v1 document"),
])
def test_validator_finds_each_problem(document, mutate, problem):
    broken = copy.deepcopy(document)
    mutate(broken)
    assert any(problem in p for p in validate_results(broken)), validate_results(broken)


def test_readme_documents_every_field():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Bench results"):]
    missing = [path for path in FIELDS if f"`{path}`" not in section]
    assert missing == []


def test_eager_baseline_from_the_checkpoint_and_its_speedup_pairs(export, tmp_path):
    mine = copy_export(export, tmp_path / "export")
    checkpoint = tmp_path / "student.pt"
    torch.save(tiny_model(0).state_dict(), checkpoint)
    write_manifest(mine, checkpoint=checkpoint)
    run = run_bench(mine, CONFIG, backend=LocalBackend(model_loader=state_dict_loader), plot=False,
                    show_progress=False)
    doc = run.document
    assert validate_results(doc) == []
    eager = next(m for m in doc["models"] if m["name"] == "eager")
    assert (eager["runtime"], eager["precision_ran"], eager["graph"]) == ("pytorch", "fp32", None)
    assert eager["model_bytes"] == checkpoint.stat().st_size and eager["label"] == "PyTorch FP32 eager"
    pairs = [(s["batch"], s["baseline"], s["candidate"]) for s in doc["speedups"]]
    assert pairs == [(b, base, cand) for b in (1, 3) for base, cand in
                     (("fp32", "int8"), ("eager", "int8"), ("eager", "fp32"))]
    assert "PyTorch FP32 eager" in render_console(doc)


def test_eager_skipped_with_a_note_when_checkpoint_missing(export, tmp_path):
    mine = copy_export(export, tmp_path / "export")
    write_manifest(mine, checkpoint=None)
    manifest = json.loads((mine / "manifest.json").read_text())
    manifest["checkpoint"] = {"file": str(tmp_path / "gone.pt"), "sha256": "0" * 64}
    (mine / "manifest.json").write_text(json.dumps(manifest))
    doc = run_bench(mine, CONFIG, plot=False, show_progress=False).document
    assert any("gone.pt is not on this machine" in n for n in doc["notes"])


def test_accuracy_per_graph_on_labelled_data(export):
    job = prepare_job(export, CONFIG, show_progress=False)
    images = np.random.default_rng(5).standard_normal((20, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        labels = tiny_model(0)(torch.from_numpy(images)).argmax(1).numpy()
    data = EvalData(images, labels, "synthetic", "synthetic", True, (0.5,), (0.25,))
    job = dataclasses.replace(job, eval_data=data)
    outcome = LocalBackend().run(job)
    assert outcome.accuracy["fp32"] == {"top1": 1.0, "correct": 20, "n": 20}
    assert outcome.accuracy["int8"]["n"] == 20 and outcome.accuracy["int8"]["top1"] >= 0.5
    doc = build_results(job, outcome, device_name="local", environment={"cpu": {}, "os": "x", "python": "3",
                                                                          "versions": {}, "git_commit": None,
                                                                          "threads": 1})
    assert next(m for m in doc["models"] if m["name"] == "fp32")["accuracy"]["top1"] == 1.0
    assert "100.00%" in render_console(doc)


def test_report_shows_device_block_fallbacks_and_untrusted_ratios(document):
    doc = copy.deepcopy(document)
    doc["device"] = {"name": "jetson-nano", "gpu": "NVIDIA Tegra X1", "fast_int8": False}
    doc["speedups"][0].update(trustworthy=False, warning="only 6 timed iterations")
    text = render_markdown(doc)
    assert "Device: name: jetson-nano, gpu: NVIDIA Tegra X1, fast_int8: False" in text
    assert "⚠" in text and "not trustworthy: only 6 timed iterations" in text
    # 6 iterations is below the trust threshold: the real document says so too
    assert all(not s["trustworthy"] for s in document["speedups"])
    assert any("fewer than 20" in w for w in document["warnings"])


def test_cpu_facts_from_a_recorded_cpuinfo():
    cpuinfo = ("processor\t: 0\nmodel name\t: Example CPU\nphysical id\t: 0\ncore id\t: 0\n"
               "flags\t\t: fpu avx avx2 avx512f avx512_vnni\n\n"
               "processor\t: 1\nmodel name\t: Example CPU\nphysical id\t: 0\ncore id\t: 0\n"
               "flags\t\t: fpu avx avx2 avx512f avx512_vnni\n")
    facts = cpu_facts(cpuinfo)
    assert facts["model"] == "Example CPU" and facts["physical_cores"] == 1
    assert facts["isa"]["avx2"] and facts["isa"]["avx512_vnni"] and not facts["isa"]["amx_int8"]
    arm = cpu_facts("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert arm["isa"]["asimddp"] and not arm["isa"]["avx2"]
    assert cpu_facts("")["isa"] is None


def test_git_state_outside_a_checkout(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}


@pytest.mark.skipif(importlib.util.find_spec("sqakd_edge.data") is None
                    or not hasattr(importlib.import_module("sqakd_edge.data"), "open_dataset"),
                    reason="the data module (open_dataset) has not landed on this branch yet")
def test_cli_with_embedded_data_reports_accuracy(tmp_path_factory, tmp_path):
    # A model for the embedded Fashion-MNIST images (1x28x28); untrained, so only the plumbing is checked.
    from click.testing import CliRunner

    from sqakd_edge.cli import main
    from sqakd_edge.data import open_dataset

    from .bench_fixtures import export_fp32, quantize_qdq

    info = open_dataset("embedded", split="test")
    directory = tmp_path / "export"
    directory.mkdir()
    export_fp32(tiny_model(0), directory / "model.fp32.onnx", size=info.input_size, channels=info.in_channels)
    quantize_qdq(directory / "model.fp32.onnx", directory / "model.int8.onnx")
    write_manifest(directory, size=info.input_size, channels=info.in_channels)
    result = CliRunner().invoke(main, ["bench", str(directory), "--data", "embedded", "--data-limit", "64",
                                       "--iters", "4", "--warmup", "1", "--threads", "1", "--no-plot", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads((directory / "bench" / "results.json").read_text())
    assert doc["settings"]["inputs"] == "data"
    assert all(m["accuracy"]["n"] == 64 for m in doc["models"])


def test_eager_skipped_when_the_checkpoint_is_another_file_than_the_exported_one(export, tmp_path):
    mine = copy_export(export, tmp_path / "export")
    ckpt = tmp_path / "model.pt"
    torch.save(TinyNet().state_dict(), ckpt)
    write_manifest(mine, checkpoint=ckpt)
    torch.save({"replaced": torch.zeros(1)}, ckpt)  # changed after export
    doc = run_bench(mine, CONFIG, plot=False, show_progress=False).document
    assert any("not the one the export was made from" in n for n in doc["notes"])


@pytest.mark.parametrize("name,problem", [("/etc/passwd", "outside the export directory"),
                                          ("../model.fp32.onnx", "outside the export directory"),
                                          ("model.fp32.onnx", "no sha256")])
def test_manifest_graph_names_stay_inside_and_are_hashed(export, tmp_path, name, problem):
    from sqakd_edge.bench.export_dir import load_export_dir
    from sqakd_edge.errors import ExportError

    mine = copy_export(export, tmp_path / "export")
    manifest = json.loads((mine / "manifest.json").read_text())
    manifest["graphs"]["fp32"]["file"] = name
    if problem == "no sha256":
        del manifest["graphs"]["fp32"]["sha256"]
    else:
        (tmp_path / "model.fp32.onnx").write_bytes((mine / "model.fp32.onnx").read_bytes())
    (mine / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=problem):
        load_export_dir(mine)


def test_default_results_folder_is_never_written_through_a_planted_link(export, tmp_path):
    from sqakd_edge.errors import ConfigError

    mine = copy_export(export, tmp_path / "export")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "report.md").write_text("precious")
    (mine / "bench").symlink_to(victim)
    with pytest.raises(ConfigError, match="is a link"):
        run_bench(mine, CONFIG, plot=False, show_progress=False)
    assert sorted(p.name for p in victim.iterdir()) == ["report.md"]
    assert (victim / "report.md").read_text() == "precious"


def test_a_failed_bench_leaves_no_empty_results_folder(export, tmp_path):
    class Failing:
        name = "failing"

        def run(self, job):
            raise RuntimeError("device lost")

    mine = copy_export(export, tmp_path / "export")
    with pytest.raises(RuntimeError):
        run_bench(mine, CONFIG, plot=False, show_progress=False, backend=Failing())
    assert not (mine / "bench").exists()


@pytest.mark.parametrize("path,value,problem", [(("input", "mean"), ["abc"], "input.mean must be a list of numbers"),
                                                (("input", "std"), [0.0], "positive numbers"),
                                                (("model", "num_classes"), "ten", "positive integer")])
def test_manifest_fields_of_the_wrong_type_are_one_line(export, tmp_path, path, value, problem):
    from sqakd_edge.bench.export_dir import load_export_dir
    from sqakd_edge.errors import ExportError

    mine = copy_export(export, tmp_path / "export")
    manifest = json.loads((mine / "manifest.json").read_text())
    manifest[path[0]][path[1]] = value
    (mine / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=problem):
        load_export_dir(mine)


def test_an_infinite_duration_is_refused():
    from sqakd_edge.errors import ConfigError

    with pytest.raises(ConfigError, match="finite"):
        BenchConfig(duration_s=float("inf"), iters=None)


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_allocating(export):
    from sqakd_edge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--batch 100000000 needs .* GiB for its input alone"):
        run_bench(export, dataclasses.replace(CONFIG, batches=(1, 100_000_000)), plot=False, show_progress=False)
