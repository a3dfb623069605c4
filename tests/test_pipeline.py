"""train -> export -> bench, end to end through the CLI on small real-format data."""

import json

from .test_cli_train import FAST, fmnist, run, teacher  # noqa: F401  (module-scoped fixtures)


def test_student_exports_and_benches_against_its_teacher(fmnist, teacher, tmp_path):  # noqa: F811
    student_dir = tmp_path / "student"
    r = run("train", "--teacher", teacher, "--data", fmnist, "--out", student_dir, "--wbits", "4", "--abits", "4",
            *FAST)
    assert r.exit_code == 0, r.output
    export = tmp_path / "export"
    r = run("export", student_dir / "best.pt", "--int8", "--target", "onnxruntime", "--teacher", teacher,
            "--data", fmnist, "--out", export, "--parity-samples", "64",
            # a student trained for one epoch on 192 images has near-tied logits, where ORT's fused integer
            # kernels (int32 bias, requantized outputs) may flip a few top-1s; the reference path must agree
            "--min-top1-on", "0.8")
    assert r.exit_code == 0, r.output
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["graphs"]["fp32"]["source"] == "teacher" and manifest["parity"]["int8"]["passed"]

    out = tmp_path / "bench"
    r = run("bench", export, "--batch", "1,4", "--iters", "5", "--warmup", "1", "--data", fmnist, "--out", out,
            "--no-plot", "--quiet")
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "results.json").read_text())
    models = {m["name"]: m for m in doc["models"]}
    assert set(models) == {"fp32", "int8", "eager"}
    # the eager baseline is the float teacher behind model.fp32.onnx: same predictions, same accuracy
    assert models["eager"]["accuracy"]["top1"] == models["fp32"]["accuracy"]["top1"]
    assert all(r["precision_ran"] == "fp32" for r in doc["results"] if r["name"] == "eager")
