"""``sqakd-edge export`` end to end on real checkpoint files: the export directory as agreed, and bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner

from sqakd_edge.checkpoint import FORMAT, VERSION, model_meta, save_checkpoint
from sqakd_edge.cli import main
from sqakd_edge.config import QuantConfig, TrainConfig, to_dict
from sqakd_edge.models import create_model
from sqakd_edge.quant import prepare_qat

SIZE = 16


def _checkpoint(kind: str, model: torch.nn.Module, quant: QuantConfig | None, path: Path) -> Path:
    data = {"spec": "embedded", "name": "fashion-mnist-embedded", "mean": [0.286], "std": [0.353], "in_channels": 1,
            "input_size": SIZE, "num_classes": 10, "labelled": True}
    save_checkpoint({"format": FORMAT, "version": VERSION, "kind": kind, "model": model_meta("resnet20", 10, 1, SIZE),
                     "data": data, "quant": to_dict(quant) if quant else None, "train": to_dict(TrainConfig()),
                     "teacher": None, "state_dict": model.state_dict(), "epoch": 1}, path)
    return path


def _fit(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int, lr: float) -> None:
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """A briefly trained teacher and W4A4 student on the embedded Fashion-MNIST (16x16), and an untrained W2A2
    with the paper's float residual Adds (``residual_bits=0``: what ``--residual-qdq`` is for)."""
    from sqakd_edge.data import open_dataset

    root = tmp_path_factory.mktemp("ckpts")
    train = open_dataset("embedded", "train", input_size=SIZE).dataset
    pairs = [train[i] for i in range(0, len(train), 3)]
    images, labels = torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    torch.manual_seed(0)
    teacher = create_model("resnet20", num_classes=10, in_channels=1)
    _fit(teacher, images, labels, 150, 1e-2)
    out = {"teacher": _checkpoint("fp", teacher, None, root / "teacher.pt")}
    for name, quant, steps in (("w4a4", QuantConfig(quantizer="pact", wbits=4, abits=4), 40),
                               ("w2a2", QuantConfig(quantizer="lsq", wbits=2, abits=2, residual_bits=0), 0)):
        s = prepare_qat(teacher, quant).eval()
        with torch.no_grad():
            s(images[:64])
        _fit(s, images, labels, steps, 1e-3)
        out[name] = _checkpoint("student", s, quant, root / f"{name}.pt")
    return out


def invoke(*args: str) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result: object) -> str:
    """The error on stderr is one line (progress lines before it go to stdout)."""
    out = result.stderr.strip()  # type: ignore[attr-defined]
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert out.startswith("error: ") and "\n" not in out and "Traceback" not in out
    return out


def no_leftovers(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_export_writes_the_agreed_directory(ckpts, tmp_path):
    out = tmp_path / "export"
    res = invoke("export", ckpts["w4a4"], "--int8", "--out", out, "--teacher", ckpts["teacher"],
                 "--parity-samples", 48)
    assert res.exit_code == 0, res.output
    assert "int8: top-1 agreement" in res.output and "- ok" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.fp16.onnx", "model.fp32.onnx",
                                                      "model.int8.onnx"]
    m = json.loads((out / "manifest.json").read_text())
    # the FP16 graph (TensorRT 11 builds FP16 only from one): float16 inside, float32 at the edges, parity-checked
    fp16 = onnx.load(str(out / "model.fp16.onnx"))
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)
    assert m["parity"]["fp16"]["passed"] and m["parity"]["fp16"]["off"]["top1_agreement"] >= 0.99
    assert m["graphs"]["fp16"]["sha256"] == hashlib.sha256((out / "model.fp16.onnx").read_bytes()).hexdigest()
    assert m["schema"] == "sqakd-edge.export-manifest" and m["schema_version"] == 1
    assert m["model"] == {"name": "resnet20", "num_classes": 10, "in_channels": 1, "input_size": SIZE}
    assert m["input"] == {"name": "input", "shape": ["batch", 1, SIZE, SIZE], "dtype": "float32", "mean": [0.286],
                          "std": [0.353], "layout": "NCHW"}
    assert m["output"] == {"name": "logits", "shape": ["batch", 10]}
    assert (m["target"], m["opset"]) == ("tensorrt", 13)
    assert m["graphs"]["fp32"]["source"] == "teacher" and m["teacher"]["sha256"]
    assert (m["graphs"]["int8"]["wbits"], m["graphs"]["int8"]["abits"]) == (4, 4)
    assert m["quant"]["quantizer"] == "pact" and m["checkpoint"]["file"] == str(ckpts["w4a4"].resolve())
    assert set(m["versions"]) >= {"sqakd_edge", "torch", "onnx", "onnxruntime"}
    assert m["parity"]["passed"] is True and m["parity"]["int8"]["off"]["samples"] == 48 == m["parity"]["samples"]
    for key in ("fp32", "int8"):
        path = out / m["graphs"][key]["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == m["graphs"][key]["sha256"]
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        assert [i.version for i in model.opset_import if i.domain in ("", "ai.onnx")] == [13]
        (inp,), (outp,) = model.graph.input, model.graph.output
        assert inp.name == "input" and outp.name == "logits"
        assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 1, SIZE, SIZE]
        assert [d.dim_param or d.dim_value for d in outp.type.tensor_type.shape.dim] == ["batch", 10]
    int8 = onnx.load(out / "model.int8.onnx")
    assert not any(n.op_type in ("Identity", "BatchNormalization") for n in int8.graph.node)
    weights = [i for i in int8.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    assert len(weights) == 18  # every quant conv stores int8 weights
    check = invoke("check", out / "model.int8.onnx")
    assert check.exit_code == 0 and "0 error(s)" in check.output
    no_leftovers(tmp_path)


def test_polygraphy_accepts_our_graphs(ckpts, tmp_path):
    out = tmp_path / "e"
    assert invoke("export", ckpts["w4a4"], "--int8", "--out", out, "--parity-samples", 16).exit_code == 0
    exe = shutil.which("polygraphy") or str(Path(sys.executable).parent / "polygraphy")
    if not Path(exe).exists():
        pytest.skip("polygraphy is not installed (pip install polygraphy)")
    for name in ("model.fp32.onnx", "model.int8.onnx"):
        proc = subprocess.run([exe, "inspect", "model", str(out / name), "--show", "layers"], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "input" in proc.stdout and "logits" in proc.stdout


def test_onnxruntime_target_and_float_only_export(ckpts, tmp_path):
    # --min-top1-on 0.9: ORT's fused run rounds conv biases to its int32 grid, which flips a 4-bit student's
    # near-tied decisions (1 of these 32); the reference run ("off") must still agree exactly
    res = invoke("export", ckpts["w4a4"], "--int8", "--target", "onnxruntime", "--out", tmp_path / "ort",
                 "--parity-samples", 32, "--min-top1-on", "0.9")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ort" / "manifest.json").read_text())
    assert m["target"] == "onnxruntime" and m["graphs"]["fp32"]["source"] == "student-float"
    layers = m["graphs"]["int8"]["layers"]
    assert {layer["input"]["dtype"] for layer in layers} == {"uint8"}  # post-ReLU inputs, exact in uint8
    assert m["parity"]["int8"]["on"]["kernels"]["integer"]["QLinearConv"] >= 1
    assert invoke("check", tmp_path / "ort" / "model.int8.onnx", "--target", "onnxruntime").exit_code == 0
    res = invoke("export", ckpts["w4a4"], "--out", tmp_path / "fp", "--parity-samples", 16)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "fp").iterdir()) == ["manifest.json", "model.fp16.onnx",
                                                                   "model.fp32.onnx"]
    assert "int8" not in json.loads((tmp_path / "fp" / "manifest.json").read_text())["graphs"]


def test_parity_miss_writes_nothing_unless_asked(ckpts, tmp_path):
    # skip-branch Q/DQ on an untrained 2-bit student (near-tied logits) changes decisions: a genuine miss
    args = ["export", ckpts["w2a2"], "--int8", "--residual-qdq", "--parity-samples", 128]
    res = invoke(*args, "--out", tmp_path / "miss")
    msg = one_line_error(res)
    assert "parity below threshold" in msg and "--no-parity-fail" in msg
    assert not (tmp_path / "miss").exists()
    no_leftovers(tmp_path)
    res = invoke(*args, "--out", tmp_path / "kept", "--no-parity-fail")
    assert res.exit_code == 1
    m = json.loads((tmp_path / "kept" / "manifest.json").read_text())
    assert m["parity"]["passed"] is False and m["graphs"]["int8"]["residual_qdq"] is True
    assert m["graphs"]["int8"]["exact"] is False and m["graphs"]["int8"]["skips"]
    assert {f["rule"] for f in m["graphs"]["int8"]["lint"]["findings"]} == set()  # skips quantized: no warnings


def test_bad_checkpoints(ckpts, tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    assert "not a sqakd-edge checkpoint" in one_line_error(invoke("export", foreign, "--int8", "--out", tmp_path / "a"))
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    assert "corrupt" in one_line_error(invoke("export", text, "--out", tmp_path / "b"))
    msg = one_line_error(invoke("export", ckpts["teacher"], "--int8", "--out", tmp_path / "c"))
    assert "float model" in msg and "--int8 needs a quantized student" in msg
    msg = one_line_error(invoke("export", ckpts["w4a4"], "--int8", "--teacher", ckpts["w4a4"], "--out", tmp_path / "d"))
    assert "a float teacher" in msg
    assert not any((tmp_path / n).exists() for n in "abcd")
    no_leftovers(tmp_path)


def test_bad_shapes_and_output_folders(ckpts, tmp_path):
    msg = one_line_error(invoke("export", ckpts["w4a4"], "--int8", "--input-shape", "1x3x16x16",
                                "--out", tmp_path / "a"))
    assert "rejects input shape 1x3x16x16" in msg and "--input-shape" in msg
    assert "NxCxHxW" in one_line_error(invoke("export", ckpts["w4a4"], "--input-shape", "big", "--out", tmp_path / "a"))
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    msg = one_line_error(invoke("export", ckpts["w4a4"], "--out", blocker / "sub"))
    assert "cannot write the export" in msg
    assert "is a file" in one_line_error(invoke("export", ckpts["w4a4"], "--out", blocker))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    assert "--force" in one_line_error(invoke("export", ckpts["w4a4"], "--out", occupied))
    assert (occupied / "keep.txt").read_text() == "mine"
    res = invoke("export", ckpts["w4a4"], "--out", occupied, "--force", "--parity-samples", 8)
    assert res.exit_code == 0 and not (occupied / "keep.txt").exists()
    assert not (tmp_path / "a").exists()
    no_leftovers(tmp_path)


def test_failure_while_writing_leaves_nothing(ckpts, tmp_path, monkeypatch):
    """A full disk while the manifest is flushed (the real write path fails): one line, nothing left."""
    import sqakd_edge.atomic as atomic

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    res = invoke("export", ckpts["w4a4"], "--int8", "--out", tmp_path / "out", "--parity-samples", 8)
    assert "No space left on device" in one_line_error(res) and "nothing was written" in res.stderr
    assert not (tmp_path / "out").exists()
    no_leftovers(tmp_path)


def test_parity_runs_on_the_checkpoints_data_or_says_what_it_used(ckpts, tmp_path):
    res = invoke("export", ckpts["w4a4"], "--int8", "--out", tmp_path / "e", "--parity-samples", 64)
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "e" / "manifest.json").read_text())
    data = m["parity"]["data"]  # no --data: the data the checkpoint was trained on, its test split
    assert (data["spec"], data["split"], data["labelled"], data["samples"]) == ("embedded", "test", True, 64)
    assert m["data"] == {"spec": "embedded", "name": "fashion-mnist-embedded"}
    acc = m["accuracy"]["int8"]  # a trained student on real images; the graphs' accuracy beside the model's
    assert acc["samples"] == 64 and acc["pytorch_student"] > 0.5
    assert abs(acc["onnx_opt_off"] - acc["pytorch_student"]) <= 1 / 64
    assert m["accuracy"]["fp32"]["source"] == "student-float" and m["accuracy"]["fp32"]["samples"] == 32
    res = invoke("export", ckpts["w4a4"], "--int8", "--data", "cifar10:/nonexistent", "--out", tmp_path / "f")
    assert "cifar" in one_line_error(res).lower() and not (tmp_path / "f").exists()
    ckpt = torch.load(ckpts["w4a4"], weights_only=True)
    ckpt["data"]["spec"] = "folder:/data/that/is/elsewhere"
    moved = tmp_path / "moved.pt"
    save_checkpoint(ckpt, moved)
    res = invoke("export", moved, "--int8", "--out", tmp_path / "g", "--parity-samples", 16)
    assert res.exit_code == 0, res.output  # falls back to the embedded set (channels fit) and says why
    data = json.loads((tmp_path / "g" / "manifest.json").read_text())["parity"]["data"]
    assert data["spec"] == "embedded" and "folder:/data/that/is/elsewhere" in data["note"]


def test_float_checkpoint_exports_its_float_graph(ckpts, tmp_path):
    res = invoke("export", ckpts["teacher"], "--out", tmp_path / "t", "--parity-samples", 8)
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert list(m["graphs"]) == ["fp32", "fp16"] and m["graphs"]["fp32"]["source"] == "teacher" and m["quant"] is None
    assert m["parity"]["fp32"]["off"]["max_abs_dlogit"] < 1e-3


def test_opset_is_checked_and_recorded(ckpts, tmp_path):
    res = invoke("export", ckpts["w4a4"], "--int8", "--opset", "17", "--out", tmp_path / "o17", "--parity-samples", 8)
    assert res.exit_code == 0, res.output
    model = onnx.load(tmp_path / "o17" / "model.int8.onnx")
    assert [i.version for i in model.opset_import if i.domain in ("", "ai.onnx")] == [17]
    assert json.loads((tmp_path / "o17" / "manifest.json").read_text())["opset"] == 17
    check = invoke("check", tmp_path / "o17" / "model.int8.onnx")
    assert check.exit_code == 0 and "TensorRT 8.2" in check.output  # a warning, not an error
    assert "opset must be 13-20" in one_line_error(invoke("export", ckpts["w4a4"], "--opset", "11",
                                                          "--out", tmp_path / "o11"))


def test_an_out_that_contains_an_input_is_refused_before_anything_is_touched(ckpts, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ckpt = run_dir / "best.pt"
    shutil.copyfile(ckpts["w4a4"], ckpt)
    before = ckpt.read_bytes()
    for out in (run_dir, tmp_path):
        err = one_line_error(invoke("export", ckpt, "--int8", "--out", out, "--force"))
        assert "contains the input" in err and "choose another --out" in err
    err = one_line_error(invoke("export", ckpts["w4a4"], "--int8", "--out", Path(ckpts["teacher"]).parent, "--force",
                          "--teacher", ckpts["teacher"]))
    assert "contains the input" in err
    assert ckpt.read_bytes() == before and sorted(p.name for p in run_dir.iterdir()) == ["best.pt"]
