"""Issue 16's corpus of hostile inputs: each one a one-line error, with nothing of the user's lost.

Every entry of ``CASES`` is one bad input to the CLI (``train``, ``export``, ``check``, ``bench``): a small
builder writes its hostile files under the test's ``tmp_path`` and returns the command line plus the user
data it puts at risk (an old run folder, an occupied export folder, a victim folder behind a planted link,
the hostile file itself). :func:`test_hostile_input` runs the command in-process and asserts:

* a refusal (:func:`refused`): exit code 2, stderr exactly one line starting with ``error: ``, no traceback,
  and every expected fragment in that line (``{tmp}`` stands for the test's ``tmp_path``);
* a finding (:func:`finding`, ``check`` only: a malformed graph is what ``check`` exists to report): exit
  code 1, nothing on stderr, one line per finding naming the expected rule(s), and the summary line;
* for both: the command ended by ``sys.exit`` (not an exception click turned into exit code 1), every
  ``--flag`` the message suggests exists in some command's ``--help``, and every path in ``keep`` has the same
  entries, link targets and bytes as before.

To add a case: write a builder ``def _my_case(tmp, fx) -> tuple[list, list[Path]]`` (``fx`` holds the
module's tiny checkpoint and export directory; copy what you change) and append
``refused("command-what", _my_case, "fragment", ...)`` or ``finding("check-what", _my_case, "rule")`` to
``CASES``. A case that still escapes (traceback, hang, lost data) goes in with ``marks=escapes("what
happens")``: a strict xfail, so the fix turns it into a failure that asks to drop the mark.

Link loops in image folders are not errors (the loop is skipped, and one warning says so): they are the
second, smaller table, :data:`LINK_LOOPS`, checked through the data API.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from sqakd_edge.checkpoint import FORMAT, VERSION, model_meta, save_checkpoint
from sqakd_edge.config import TrainConfig, to_dict
from sqakd_edge.data import open_dataset
from sqakd_edge.models import create_model

from .bench_fixtures import cached_export, copy_export
from .cli_helpers import one_line_error, run

SIZE = 16
COMMANDS = ("train", "export", "check", "bench")


def escapes(what: str) -> pytest.MarkDecorator:
    """The mark of a case that still escapes: a strict xfail, so a fix makes it fail until the mark goes."""
    return pytest.mark.xfail(strict=True, reason=f"escapes: {what}")


# --- module fixtures: one tiny checkpoint and one export directory, reused by every case ---------------------


@dataclass(frozen=True)
class Fx:
    teacher: Path  # a valid float checkpoint (untrained resnet20, 1x16x16, 10 classes)
    base: dict  # its dict, to craft header-valid but malformed checkpoints from
    export: Path  # a valid export directory (tests copy it before changing anything)


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Fx:
    root = tmp_path_factory.mktemp("hostile-fixtures")
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=1)
    data = {"spec": "embedded", "name": "fashion-mnist-embedded", "mean": [0.286], "std": [0.353], "in_channels": 1,
            "input_size": SIZE, "num_classes": 10, "labelled": True}
    base = {"format": FORMAT, "version": VERSION, "kind": "fp", "model": model_meta("resnet20", 10, 1, SIZE),
            "data": data, "quant": None, "train": to_dict(TrainConfig()), "teacher": None,
            "state_dict": model.state_dict(), "epoch": 1}
    save_checkpoint(base, root / "teacher.pt")
    return Fx(root / "teacher.pt", base, cached_export(tmp_path_factory))


@pytest.fixture(scope="module")
def help_texts() -> str:
    texts = []
    for command in COMMANDS:
        result = run(command, "--help")
        assert result.exit_code == 0, result.output
        texts.append(result.output)
    return "\n".join(texts)


# --- user data the cases put at risk, and its fingerprint ----------------------------------------------------


def _old_run(tmp: Path) -> Path:
    """A finished run of the user's (what ``--force`` sets aside and must give back on failure)."""
    run_dir = tmp / "old-run"
    run_dir.mkdir()
    for name in ("last.pt", "best.pt", "metrics.jsonl", "summary.json"):
        (run_dir / name).write_bytes(f"the user's {name}\n".encode())
    return run_dir


def _old_export(tmp: Path) -> Path:
    """An occupied export folder (what ``export --force`` would replace)."""
    out = tmp / "old-export"
    out.mkdir()
    (out / "manifest.json").write_text('{"the user\'s": "manifest"}\n')
    (out / "model.fp32.onnx").write_bytes(b"the user's graph\n")
    return out


def _fingerprint(path: Path) -> dict[str, tuple]:
    """Entries, link targets and hashes under ``path`` (links are recorded, never followed)."""
    def one(p: Path) -> tuple:
        if p.is_symlink():
            return ("link", os.readlink(p))
        if p.is_dir():
            return ("dir",)
        if p.is_file():
            return ("file", hashlib.sha256(p.read_bytes()).hexdigest())
        return ("missing",)

    found = {str(path): one(path)}
    if path.is_dir() and not path.is_symlink():
        for folder, dirs, files in os.walk(path):
            for name in dirs + files:
                p = Path(folder) / name
                found[str(p)] = one(p)
    return found


# --- builders: each writes its hostile files under tmp and returns (argv, paths that must survive) -----------

Built = tuple[list, list[Path]]
Builder = Callable[[Path, Fx], Built]


def _train(teacher: Path, tmp: Path, *extra: object) -> Built:
    run_dir = _old_run(tmp)
    return ["train", "--teacher", teacher, "--out", run_dir, "--force", "--no-progress", *extra], [run_dir, teacher]


def _export(ckpt: Path, tmp: Path, *extra: object) -> Built:
    out = _old_export(tmp)
    return ["export", ckpt, "--out", out, "--force", *extra], [out, ckpt]


def _text_file(tmp: Path, text: str) -> Path:
    path = tmp / "hostile.pt"
    path.write_text(text)
    return path


def text_teacher(text: str) -> Builder:
    return lambda tmp, fx: _train(_text_file(tmp, text), tmp)


def text_export(text: str) -> Builder:
    return lambda tmp, fx: _export(_text_file(tmp, text), tmp, "--int8")


def _crafted(tmp: Path, fx: Fx, change: Callable[[dict], None]) -> Path:
    """A checkpoint with a valid header and a malformed body (torch.save, as a hand-made file would be)."""
    ckpt = dict(fx.base)
    change(ckpt)
    path = tmp / "crafted.pt"
    torch.save(ckpt, path)
    return path


def crafted_teacher(change: Callable[[dict], None]) -> Builder:
    return lambda tmp, fx: _train(_crafted(tmp, fx, change), tmp)


def crafted_export(change: Callable[[dict], None]) -> Builder:
    return lambda tmp, fx: _export(_crafted(tmp, fx, change), tmp, "--int8")


def _no_model(ckpt: dict) -> None:
    del ckpt["model"]


def _student_without_quant(ckpt: dict) -> None:
    ckpt.update(kind="student", quant=None)


def train_flags(*flags: object) -> Builder:
    return lambda tmp, fx: _train(fx.teacher, tmp, *flags)


def _train_out_under_a_file(tmp: Path, fx: Fx) -> Built:
    blocker = tmp / "notes.txt"
    blocker.write_text("the user's notes\n")
    return ["train", "--teacher", fx.teacher, "--out", blocker / "run", "--no-progress", "--epochs", "1"], [blocker]


def _train_out_is_a_file(tmp: Path, fx: Fx) -> Built:
    blocker = tmp / "notes.txt"
    blocker.write_text("the user's notes\n")
    return ["train", "--teacher", fx.teacher, "--out", blocker, "--no-progress", "--epochs", "1"], [blocker]


def _train_corrupt_image(tmp: Path, fx: Fx) -> Built:
    """A labelled folder with one undecodable image; --force on an old run, which must come back."""
    images = tmp / "images"
    for c in ("class0", "class1"):
        (images / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(images / c / f"{i}.png")
    (images / "class1" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    run_dir = _old_run(tmp)
    argv = ["train", "--fp", "--data", f"folder:{images}", "--out", run_dir, "--force", "--no-progress",
            "--epochs", "1", "--batch-size", "4"]
    return argv, [run_dir, images]


def _export_into_the_checkpoints_folder(tmp: Path, fx: Fx) -> Built:
    run_dir = tmp / "run"
    run_dir.mkdir()
    (run_dir / "best.pt").write_bytes(fx.teacher.read_bytes())
    return ["export", run_dir / "best.pt", "--out", run_dir, "--force"], [run_dir]


def _export_into_the_checkpoints_parent(tmp: Path, fx: Fx) -> Built:
    argv, keep = _export_into_the_checkpoints_folder(tmp, fx)
    return [*argv[:3], tmp, "--force"], keep


# check: hand-made graphs (onnx.helper), x (N, 4, 8, 8) -> ... -> y


def _graph(nodes: list, inits: list, out: str, tmp: Path) -> Built:
    nodes = [*nodes, helper.make_node("Identity", [out], ["y"], name="out_identity")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "hostile", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp / "hostile.onnx"
    onnx.save(model, path)
    return ["check", path], [path]


def _scale_zp() -> list:
    return [numpy_helper.from_array(np.asarray(0.1, np.float32), "s"), numpy_helper.from_array(np.asarray(0, np.int8),
                                                                                               "zp")]


def _q_without_inputs_or_outputs(tmp: Path, fx: Fx) -> Built:
    return _graph([helper.make_node("QuantizeLinear", [], [], name="q_empty")], [], "x", tmp)


def _q_without_inputs(tmp: Path, fx: Fx) -> Built:
    nodes = [helper.make_node("QuantizeLinear", [], ["q"], name="q_no_inputs"), helper.make_node("Relu", ["q"], ["r"])]
    return _graph(nodes, [], "r", tmp)


def _text_axis(tmp: Path, fx: Fx) -> Built:
    q = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q_text_axis")
    q.attribute.append(helper.make_attribute("axis", "one"))
    return _graph([q, helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"])], _scale_zp(), "dq", tmp)


def _text_scale(tmp: Path, fx: Fx) -> Built:
    inits = [helper.make_tensor("s", TensorProto.STRING, [], [b"0.1"]), _scale_zp()[1]]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q_text_scale"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"], name="dq_text_scale")]
    return _graph(nodes, inits, "dq", tmp)


def _bad_raw_data(tmp: Path, fx: Fx) -> Built:
    bad = TensorProto(name="s", data_type=TensorProto.FLOAT, dims=[4], raw_data=b"\x00\x01")  # 2 of 16 bytes
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q_bad_raw"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"])]
    return _graph(nodes, [bad, _scale_zp()[1]], "dq", tmp)


def cycle(op: str) -> Builder:
    """Two ``op`` nodes feeding each other (a BatchNorm cycle used to hang, an Identity one to recurse)."""
    def build(tmp: Path, fx: Fx) -> Built:
        nodes = [helper.make_node(op, ["loop_b"], ["loop_a"], name="a"),
                 helper.make_node(op, ["loop_a"], ["loop_b"], name="b"),
                 helper.make_node("QuantizeLinear", ["loop_a", "s", "zp"], ["q"], name="q"),
                 helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"], name="dq")]
        return _graph(nodes, _scale_zp(), "dq", tmp)

    return build


# bench: a private copy of the module's export directory, its manifest edited


def _bench_copy(tmp: Path, fx: Fx, change: Callable[[dict, Path], None] | None = None) -> Path:
    export = copy_export(fx.export, tmp / "export")
    if change is not None:
        path = export / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest, export)
        path.write_text(json.dumps(manifest, indent=2))
    return export


FAST = ["--iters", "4", "--warmup", "0", "--threads", "1", "--round-iters", "2", "--no-plot", "--quiet"]


def manifest(change: Callable[[dict, Path], None]) -> Builder:
    def build(tmp: Path, fx: Fx) -> Built:
        export = _bench_copy(tmp, fx, change)
        return ["bench", export, *FAST], [export]

    return build


def bench_flags(*flags: object) -> Builder:
    def build(tmp: Path, fx: Fx) -> Built:
        export = _bench_copy(tmp, fx)
        return ["bench", export, *flags], [export]

    return build


def _text_checkpoint_in_manifest(tmp: Path, fx: Fx) -> Built:
    text = _text_file(tmp, "abc\n")
    sha = hashlib.sha256(text.read_bytes()).hexdigest()  # the right hash: the eager baseline goes on to load it
    export = _bench_copy(tmp, fx, lambda m, d: m.update(checkpoint={"file": str(text), "sha256": sha}))
    return ["bench", export, *FAST], [export, text]


def bench_out(under_the_file: bool) -> Builder:
    """``--out`` a regular file of the user's, or a folder under one."""
    def build(tmp: Path, fx: Fx) -> Built:
        export = _bench_copy(tmp, fx)
        blocker = tmp / "notes.txt"
        blocker.write_text("the user's notes\n")
        return ["bench", export, "--out", blocker / "results" if under_the_file else blocker, *FAST], [export, blocker]

    return build


def _bench_default_out_is_a_planted_link(tmp: Path, fx: Fx) -> Built:
    export = _bench_copy(tmp, fx)
    victim = tmp / "victim"
    victim.mkdir()
    (victim / "results.json").write_text('{"the user\'s": "results"}\n')
    (victim / "report.md").write_text("the user's report\n")
    (export / "bench").symlink_to(victim)
    return ["bench", export, *FAST], [export, victim]


def _graph_file(name: Callable[[Path], str]) -> Callable[[dict, Path], None]:
    return lambda m, export: m["graphs"]["int8"].update(file=name(export))


# --- the corpus ---------------------------------------------------------------------------------------------


def refused(case_id: str, build: Builder, *fragments: str, marks=()) -> object:
    return pytest.param(build, 2, fragments, id=case_id, marks=marks)


def finding(case_id: str, build: Builder, *rules: str) -> object:
    return pytest.param(build, 1, rules, id=case_id)


# Text files starting with each byte the issue names (torch.load reads some as pickle opcodes, which raised
# types the loader did not expect): "abc", "banana", "every", "rm -rf", "sqakd", "true", "utf8", and "{}".
TEXTS = {"a": "abc\n", "b": "banana", "e": "every\n", "r": "rm -rf /\n", "s": "sqakd", "t": "true", "u": "utf8",
         "brace": "{}"}
CORRUPT = ("{tmp}/hostile.pt is corrupt, truncated or not a PyTorch file", "pass a .pt file written by torch.save")
CRAFTED = {
    "no-model-key": (_no_model, "{tmp}/crafted.pt has a malformed 'model' block (None)"),
    "version-abc": (lambda c: c.update(version="abc"), "{tmp}/crafted.pt has a malformed header (version 'abc')"),
    "model-a-string": (lambda c: c.update(model="resnet20"), "{tmp}/crafted.pt has a malformed 'model' block"),
    "state-dict-none": (lambda c: c.update(state_dict=None), "holds no weights (its state_dict is NoneType)"),
    "student-without-quant": (_student_without_quant, "is a student checkpoint without its quantization settings"),
}

CASES = [
    *(refused(f"train-teacher-text-{k}", text_teacher(t), *CORRUPT) for k, t in TEXTS.items()),
    *(refused(f"export-text-{k}", text_export(t), *CORRUPT) for k, t in TEXTS.items()),
    *(refused(f"train-teacher-{k}", crafted_teacher(c), f, "re-run training") for k, (c, f) in CRAFTED.items()),
    *(refused(f"export-{k}", crafted_export(c), f, "re-run training") for k, (c, f) in CRAFTED.items()),
    refused("train-lr-nan", train_flags("--lr", "nan"), "error: lr must be a finite number, got nan"),
    refused("train-lr-inf", train_flags("--lr", "inf"), "error: lr must be a finite number, got inf"),
    refused("train-quant-lr-nan", train_flags("--quant-lr", "nan"), "quant_lr must be a finite number, got nan"),
    refused("train-temperature-nan", train_flags("--temperature", "nan"),
            "temperature must be a finite number, got nan"),
    refused("train-weight-decay-nan", train_flags("--weight-decay", "nan"),
            "weight_decay must be a finite number, got nan"),
    refused("train-out-under-a-file", _train_out_under_a_file, "cannot write the run to --out {tmp}/notes.txt/run",
            "choose a writable folder"),
    refused("train-out-is-a-file", _train_out_is_a_file, "{tmp}/notes.txt", "is a file", "sqakd-edge train --help"),
    refused("export-unknown-target", lambda tmp, fx: (["export", fx.teacher, "--target", "tpu", "--out", tmp / "e"],
                                                      []), "'tpu' is not one of", "sqakd-edge export --help"),
    refused("train-corrupt-image", _train_corrupt_image, "cannot read image {tmp}/images/class1/3.png",
            "--skip-corrupt"),
    refused("export-out-holds-the-checkpoint", _export_into_the_checkpoints_folder,
            "--out {tmp}/run contains the input {tmp}/run/best.pt", "choose another --out"),
    refused("export-out-above-the-checkpoint", _export_into_the_checkpoints_parent,
            "--out {tmp} contains the input {tmp}/run/best.pt", "choose another --out"),
    finding("check-q-without-inputs-or-outputs", _q_without_inputs_or_outputs, "malformed-node"),
    finding("check-q-without-inputs", _q_without_inputs, "malformed-node"),
    finding("check-text-axis", _text_axis, "malformed-node"),
    finding("check-text-scale", _text_scale, "scale-dtype"),
    finding("check-bad-raw-data", _bad_raw_data, "malformed-initializer"),
    finding("check-identity-cycle", cycle("Identity"), "graph-cycle"),
    finding("check-batchnorm-cycle", cycle("BatchNormalization"), "graph-cycle"),
    refused("bench-mean-text", manifest(lambda m, d: m["input"].update(mean=["abc"])),
            "input.mean must be a list of numbers, got ['abc']", "re-export the model"),
    refused("bench-num-classes-text", manifest(lambda m, d: m["model"].update(num_classes="ten")),
            "model.num_classes must be a positive integer, got 'ten'"),
    refused("bench-checkpoint-a-text-file", _text_checkpoint_in_manifest, *CORRUPT),
    refused("bench-batch-huge", bench_flags("--batch", "100000000", *FAST), "--batch 100000000 needs",
            "use a smaller --batch"),
    refused("bench-duration-inf", bench_flags("--duration", "inf", "--warmup", "0", "--no-plot", "--quiet"),
            "--duration must be a positive, finite number of seconds, got inf"),
    refused("bench-out-under-a-file", bench_out(True),
            "cannot write the results (results.json, report.md, latency.png) to --out {tmp}/notes.txt/results",
            "choose a writable folder"),
    refused("bench-out-is-a-file", bench_out(False), "--out {tmp}/notes.txt is a file"),
    refused("bench-default-out-a-planted-link", _bench_default_out_is_a_planted_link,
            "{tmp}/export/bench is a link ({tmp}/victim)", "remove it or pass --out FOLDER"),
    refused("bench-graph-file-absolute", manifest(_graph_file(lambda d: str(d / "model.int8.onnx"))),
            "graphs.int8.file '{tmp}/export/model.int8.onnx' points outside the export directory"),
    refused("bench-graph-file-dotdot", manifest(_graph_file(lambda d: "../export/model.int8.onnx")),
            "graphs.int8.file '../export/model.int8.onnx' points outside the export directory"),
    refused("bench-graph-without-sha256", manifest(lambda m, d: m["graphs"]["int8"].pop("sha256")),
            "graphs.int8 has no sha256, so model.int8.onnx cannot be checked"),
]


@pytest.mark.timeout(60)  # a hang (the BatchNorm cycle did) fails the case instead of the whole run
@pytest.mark.parametrize("build, exit_code, expected", CASES)
def test_hostile_input(build: Builder, exit_code: int, expected: tuple[str, ...], fx: Fx, help_texts: str,
                       tmp_path: Path) -> None:
    argv, keep = build(tmp_path, fx)
    before = {str(p): _fingerprint(p) for p in keep}
    result = run(*argv)
    assert isinstance(result.exception, SystemExit), (result.exit_code, result.exc_info)  # not an escaped exception
    fragments = [f.replace("{tmp}", str(tmp_path)) for f in expected]
    if exit_code == 2:
        message = one_line_error(result, *fragments)
    else:  # check: the malformed graph is a finding, one line each, then the summary
        assert result.exit_code == 1 and result.stderr == "", result.output
        assert "Traceback" not in result.output
        *lines, summary = result.stdout.strip().splitlines()
        assert re.fullmatch(r".*: [1-9]\d* error\(s\), \d+ warning\(s\) against the tensorrt rules", summary), summary
        assert lines and all(line.split()[0] in ("error", "warning") and "fix: " in line for line in lines), lines
        for rule in fragments:
            assert any(line.split()[1] == rule for line in lines), (rule, lines)
        message = "\n".join(lines)
    for flag in set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", message)):  # a fix it suggests must exist
        assert flag in help_texts, f"the message suggests {flag}, which no command has: {message}"
    assert {str(p): _fingerprint(p) for p in keep} == before, "user data changed"


def test_the_flags_and_specs_the_image_errors_suggest_exist() -> None:
    result = run("train", "--help")
    assert result.exit_code == 0 and "--skip-corrupt" in result.output and "unlabeled:PATH" in result.output


# --- link loops in image folders: skipped and reported, never followed round ----------------------------------


LINK_LOOPS = [
    pytest.param("folder", "class0/loop", "ROOT", id="class0-loop-to-the-root"),
    pytest.param("folder", "class0/up", "..", id="class0-up-dotdot"),
    pytest.param("folder", "class1/me", ".", id="class1-me-dot"),
    pytest.param("folder", "again", ".", id="top-level-dot"),
    pytest.param("unlabeled", "class0/loop", "ROOT", id="unlabeled-class0-loop-to-the-root"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind, link, target", LINK_LOOPS)
def test_link_loops_in_an_image_folder_are_skipped_and_counted(kind: str, link: str, target: str,
                                                                tmp_path: Path) -> None:
    root = tmp_path / "images"
    for c in ("class0", "class1"):
        (root / c).mkdir(parents=True)
        for i in range(10):  # the 10th of each class is the held-out test image
            Image.fromarray(np.full((8, 8), 25 * i, np.uint8)).save(root / c / f"{c}-{i}.png")
    os.symlink(root if target == "ROOT" else target, root / link)
    before = _fingerprint(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = [open_dataset(f"{kind}:{root}", split) for split in ("train", "test")]
    notes = {str(w.message) for w in caught if issubclass(w.category, UserWarning)}
    assert any("skipped 1 link(s) looping back into it (" in n and Path(link).name in n for n in notes), notes
    samples = [s for info in splits for s in info.dataset.samples]
    paths = [p for p, _ in samples]
    assert len(paths) == len(set(paths)) == 20, paths  # each image once: nothing read twice round the loop
    assert not [p for p in paths if f"/{Path(link).name}/" in p], paths  # nothing read through the link
    assert splits[0].labelled == (kind == "folder")
    if kind == "folder":  # nothing labelled as another class through a link into it
        assert splits[0].classes == ("class0", "class1")
        assert all(label == int(Path(p).parent.name[-1]) for p, label in samples), samples
    assert _fingerprint(root) == before


# --- a real fault: the file-size limit of a child process -------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX resource limits in a child process")
def test_a_checkpoint_larger_than_the_file_size_limit_is_one_line_and_leaves_no_temp_file(tmp_path):
    """``RLIMIT_FSIZE`` below one checkpoint: torch's writer really fails (EFBIG) mid-write, as on a full disk."""
    import resource
    import signal
    import subprocess
    import sys

    images = tmp_path / "images"
    for c in ("class0", "class1"):
        (images / c).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(np.full((8, 8), 25 * i, np.uint8)).save(images / c / f"{i}.png")
    out = tmp_path / "run"
    limit = 64 << 10  # a ResNet-20 checkpoint is over 1 MB; the images and code are far smaller

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run([sys.executable, "-m", "sqakd_edge", "train", "--fp", "--data", f"folder:{images}",
                           "--out", str(out), "--no-progress", "--epochs", "1", "--batch-size", "4"],
                          capture_output=True, text=True, preexec_fn=limited, timeout=110)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[-1].startswith("error: cannot write the epoch 1 checkpoint") and "Traceback" not in done.stderr
    assert "nothing was saved yet" in lines[-1]
    assert (sorted(p.name for p in out.iterdir()) if out.exists() else []) == []  # no half-written file


def test_a_read_only_out_is_refused_before_training(tmp_path, monkeypatch):
    """As root a chmod does not stop writes, so the read-only mount is injected where the probe writes."""
    import errno

    from sqakd_edge import atomic
    from sqakd_edge.errors import ConfigError
    from sqakd_edge.train import run_dir
    from sqakd_edge.train.distributed import DistInfo

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)  # the write probe of the one atomic module
    with pytest.raises(ConfigError, match=r"cannot write the run to --out .*/run \(Read-only file system\); choose"):
        run_dir.prepare_run_dir(tmp_path / "run", resume=False, force=False, info=DistInfo())
