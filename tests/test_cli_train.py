"""The train command end to end on small real-format data, and the one-line errors of bad input."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sqakd_edge.cli import main

from .cli_helpers import one_line_error, run
from .test_data_idx import idx_bytes

EMBEDDED = Path(__file__).resolve().parents[1] / "sqakd_edge" / "data" / "embedded" / "fashion_mnist_subset.npz"
FAST = ["--epochs", "1", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory):
    """A small real Fashion-MNIST in its IDX .gz format: 192 train, 64 test images."""
    root = tmp_path_factory.mktemp("fmnist")
    d = np.load(EMBEDDED)
    parts = {"train-images-idx3-ubyte": d["train_images"][::31][:192], "train-labels-idx1-ubyte":
             d["train_labels"][::31][:192], "t10k-images-idx3-ubyte": d["test_images"][:64],
             "t10k-labels-idx1-ubyte": d["test_labels"][:64]}
    for name, arr in parts.items():
        with gzip.open(root / f"{name}.gz", "wb") as f:
            f.write(idx_bytes(arr))
    return f"fashion-mnist:{root}"


@pytest.fixture(scope="module")
def teacher(fmnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    result = CliRunner().invoke(main, ["train", "--fp", "--data", fmnist, "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    return out / "best.pt"


def test_teacher_then_label_free_student_then_resume(fmnist, teacher, tmp_path):
    out = tmp_path / "w4a4"
    r = run("train", "--teacher", teacher, "--data", fmnist, "--out", out, "--quantizer", "interval",
            "--backward", "ewgs", "--wbits", "4", "--abits", "4", *FAST)
    assert r.exit_code == 0, r.output
    assert "best epoch 1 by val_loss" in r.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["val_kl"] >= 0 and 0 <= rows[0]["test_acc"] <= 1
    r = run("train", "--teacher", teacher, "--data", fmnist, "--out", out, "--quantizer", "interval",
            "--backward", "ewgs", "--wbits", "4", "--abits", "4", "--resume", *FAST[:-5], "--epochs", "2",
            "--batch-size", "32", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "resuming" in r.output and len((out / "metrics.jsonl").read_text().splitlines()) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quant"]["quantizer"] == "interval" and summary["epochs"] == 2


def test_list_recipes_and_help():
    r = run("train", "--list-recipes")
    assert r.exit_code == 0 and "cifar" in r.output and "quant_lr=1e-05" in r.output
    r = run("train", "--help")
    assert r.exit_code == 0 and "Examples:" in r.output


def test_bad_inputs_are_one_line_errors(fmnist, teacher, tmp_path):
    one_line_error(run("train", "--teacher", teacher, "--data", fmnist, "--out", tmp_path / "a", "--wbits", "9"),
                   "wbits must be an integer from 1 to 8")
    one_line_error(run("train", "--teacher", teacher, "--data", fmnist, "--out", tmp_path / "a", "--quantizer",
                       "apot"), "unknown quantizer 'apot'", "pact, lsq, dorefa, interval")
    one_line_error(run("train", "--fp", "--model", "resnet99", "--data", fmnist, "--out", tmp_path / "a"),
                   "unknown model 'resnet99'", "resnet20")
    one_line_error(run("train", "--fp", "--recipe", "imagenet", "--data", fmnist, "--out", tmp_path / "a"),
                   "unknown recipe 'imagenet'", "--list-recipes")
    one_line_error(run("train", "--teacher", teacher, "--model", "resnet32", "--data", fmnist, "--out",
                       tmp_path / "a"), "the student must have the teacher's architecture (resnet20)")
    one_line_error(run("train", "--data", fmnist, "--out", tmp_path / "a"), "exactly one of --fp")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    one_line_error(run("train", "--teacher", bad, "--data", fmnist, "--out", tmp_path / "a"), str(bad), "corrupt")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run("train", "--teacher", teacher, "--data", f"folder:{empty}", "--out", tmp_path / "a"),
                   str(empty))


def test_class_and_channel_mismatch(teacher, tmp_path):
    from PIL import Image

    root = tmp_path / "rgb"
    for c in ("cat", "dog", "fox"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((28, 28, 3), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    # RGB images are converted to the teacher's 1-channel input (its contract); 3 classes are not its 10
    one_line_error(run("train", "--teacher", teacher, "--data", f"folder:{root}", "--out", tmp_path / "a"),
                   "has 3 classes but the teacher", "predicts 10")


def test_refuses_a_different_run_in_the_output_dir(fmnist, teacher, tmp_path):
    out = tmp_path / "run"
    assert run("train", "--teacher", teacher, "--data", fmnist, "--out", out, *FAST).exit_code == 0
    one_line_error(run("train", "--teacher", teacher, "--data", fmnist, "--out", out, "--wbits", "2", *FAST),
                   "already holds a run", "--resume", "--force")
    one_line_error(run("train", "--teacher", teacher, "--data", fmnist, "--out", out, "--wbits", "2", "--resume",
                       *FAST), "different run")


def test_console_entry_point_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sqakd_edge", "train", "--fp", "--data", f"cifar10:{tmp_path}/nope",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_residual_bits_and_amp_flags_reach_the_checkpoint(fmnist, teacher, tmp_path):
    from sqakd_edge.checkpoint import build_model_from_checkpoint, load_checkpoint

    out = tmp_path / "paper"
    r = run("train", "--teacher", teacher, "--data", fmnist, "--out", out, "--residual-bits", "0", "--no-amp",
            "--separate-residual-stream", *FAST)
    assert r.exit_code == 0, r.output
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["quant"]["residual_bits"] == 0 and ckpt["train"]["amp"] is False
    assert ckpt["quant"]["share_residual_stream"] is False
    student = build_model_from_checkpoint(ckpt)
    assert not any(hasattr(m, "output_quantizer") for m in student.modules())  # the paper's float residual Adds
    one_line_error(run("train", "--teacher", teacher, "--data", fmnist, "--out", tmp_path / "x", "--residual-bits",
                       "9", *FAST), "residual_bits must be an integer from 0 (off) to 8")
