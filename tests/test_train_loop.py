import json

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from sqakd_edge.checkpoint import build_model_from_checkpoint, load_checkpoint
from sqakd_edge.config import QuantConfig, TrainConfig
from sqakd_edge.errors import CheckpointError, ConfigError, DataError, TrainingError
from sqakd_edge.quant import iter_quantizers, prepare_qat
from sqakd_edge.train.ewgs import update_ewgs_deltas
from sqakd_edge.train.loop import RunData, fit, split_held_out
from sqakd_edge.train.loss import kd_loss

from .conftest import Unlabeled, toy_images

FAST = {"epochs": 2, "batch_size": 32, "lr": 2e-3, "val_fraction": 0.0}


def _data(labelled=True):
    images, labels = toy_images()
    train = TensorDataset(images, labels) if labelled else Unlabeled(images)
    held = TensorDataset(images[:48], labels[:48]) if labelled else Unlabeled(images[:48])
    test = TensorDataset(*toy_images(64, seed=1)) if labelled else None
    return RunData(train, held, test, labelled, {"spec": "toy"})


class _PoisonAfter(Dataset):
    """Real data until ``clean`` items were read, then NaN images (a corrupt shard, say)."""

    def __init__(self, base, clean):
        self.base, self.clean, self.reads = base, clean, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.reads += 1
        x, y = self.base[i]
        return (x * float("nan") if self.reads > self.clean else x), y


class _InterruptAfter(_PoisonAfter):
    """Real data until ``clean`` items were read, then Ctrl-C."""

    def __getitem__(self, i):
        if self.reads >= self.clean:
            raise KeyboardInterrupt
        return super().__getitem__(i)


def _quiet(*_):
    pass


def test_label_free_sqakd_on_unlabeled_data(tmp_path, float_model, toy_meta):
    q = QuantConfig(quantizer="lsq", wbits=4, abits=4)
    student = prepare_qat(float_model, q)
    result = fit(student, _data(labelled=False), TrainConfig(method="sqakd", **FAST), tmp_path, model_meta=toy_meta,
                 teacher=float_model, quant=q, progress=False, log=_quiet)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and "val_kl" in rows[0]
    assert not any("acc" in k or "ce" in k for k in rows[0])  # nothing labelled was computed
    assert result.best["metric"] == "val_loss"
    # every file of the run has the mode an ordinary open() gives (mkstemp alone would make 0600)
    (tmp_path / "plain").write_text("")
    modes = {f.name: f.stat().st_mode & 0o777 for f in tmp_path.iterdir()}
    assert set(modes) == {"best.pt", "last.pt", "metrics.jsonl", "summary.json", "plain"}
    assert len(set(modes.values())) == 1, modes
    ckpt = load_checkpoint(result.best_path, kind="student")
    assert not any(k.startswith("teacher") for k in ckpt["state_dict"])  # teacher not inside
    rebuilt = build_model_from_checkpoint(ckpt)
    x = torch.randn(3, 1, 16, 16)
    best_state = ckpt["state_dict"]
    student.load_state_dict(best_state)
    assert torch.allclose(rebuilt(x), student.eval()(x))


def test_sqakd_reduces_the_kl_to_the_teacher(tmp_path, float_model, toy_meta):
    q = QuantConfig(quantizer="pact", wbits=2, abits=2)
    student = prepare_qat(float_model, q)
    data = _data(labelled=False)
    x = torch.stack([data.train[i][0] for i in range(64)])
    student.eval()
    with torch.no_grad():
        before = float(kd_loss(student(x), float_model(x)))
    fit(student, data, TrainConfig(method="sqakd", **{**FAST, "epochs": 3}), tmp_path, model_meta=toy_meta,
        teacher=float_model, quant=q, progress=False, log=_quiet)
    student.eval()
    with torch.no_grad():
        after = float(kd_loss(student(x), float_model(x)))
    assert after < 0.7 * before


def test_teacher_frozen_and_unchanged(tmp_path, float_model, toy_meta):
    before = {k: v.clone() for k, v in float_model.state_dict().items()}
    q = QuantConfig(wbits=3, abits=3)
    fit(prepare_qat(float_model, q), _data(), TrainConfig(method="ce+kd", **FAST), tmp_path, model_meta=toy_meta,
        teacher=float_model, quant=q, progress=False, log=_quiet)
    after = float_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the teacher changed (BN stats or weights)"


def test_resume_reaches_the_same_state(tmp_path, float_model, toy_meta):
    q = QuantConfig(quantizer="lsq", backward="ewgs", wbits=4, abits=4)
    cfg = TrainConfig(method="sqakd", **FAST)
    straight = prepare_qat(float_model, q)
    fit(straight, _data(), cfg, tmp_path / "a", model_meta=toy_meta, teacher=float_model, quant=q,
        progress=False, log=_quiet)
    # interrupted (Ctrl-C) in the middle of the second epoch, then resumed
    base = _data()
    interrupted = RunData(_InterruptAfter(base.train, 32 + 192 + 64), base.held_out, base.test, True, {})
    with pytest.raises(KeyboardInterrupt):
        fit(prepare_qat(float_model, q), interrupted, cfg, tmp_path / "b", model_meta=toy_meta,
            teacher=float_model, quant=q, progress=False, log=_quiet)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed = prepare_qat(float_model, q)
    fit(resumed, _data(), cfg, tmp_path / "b", model_meta=toy_meta, teacher=float_model, quant=q,
        resume=True, progress=False, log=_quiet)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"]
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k].float(), b["state_dict"][k].float(), atol=1e-5), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    assert all(torch.allclose(sa[i]["exp_avg"], sb[i]["exp_avg"], atol=1e-5) for i in sa)


def test_ewgs_deltas_come_from_the_kl_hessian(float_model):
    q = QuantConfig(quantizer="interval", backward="ewgs", wbits=2, abits=2)
    student = prepare_qat(float_model, q).train()
    x = torch.randn(16, 1, 16, 16)
    student(x)
    with torch.no_grad():
        t = float_model(x)
    deltas = update_ewgs_deltas(student, lambda logits: kd_loss(logits, t), x, probes=2)
    assert deltas and all(d >= 0 for d in deltas.values())
    assert any(d > 0 for d in deltas.values())
    stored = {n: float(m.delta) for n, m in iter_quantizers(student)}
    assert all(stored[n] == pytest.approx(d) for n, d in deltas.items())
    assert all(m.captured is None and not m.capture_levels for _, m in iter_quantizers(student))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, float_model, toy_meta):
    base = _data()
    # the first batch (quantizer initialisation) and one whole epoch are clean
    poisoned = RunData(_PoisonAfter(base.train, 32 + 192), None, None, True, {})
    q = QuantConfig()
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2.*last good checkpoint .*last\.pt is kept"):
        fit(prepare_qat(float_model, q), poisoned, TrainConfig(method="ce", **FAST), tmp_path,
            model_meta=toy_meta, teacher=float_model, quant=q, progress=False, log=_quiet)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_refuses_to_overwrite_another_run(tmp_path, float_model, toy_meta):
    cfg = TrainConfig(method="fp", **{**FAST, "epochs": 1})
    fit(float_model, _data(), cfg, tmp_path, model_meta=toy_meta, progress=False, log=_quiet)
    with pytest.raises(ConfigError, match="already holds a run .*--resume .*--force"):
        fit(float_model, _data(), cfg, tmp_path, model_meta=toy_meta, progress=False, log=_quiet)
    fit(float_model, _data(), cfg, tmp_path, model_meta=toy_meta, force=True, progress=False, log=_quiet)
    with pytest.raises(ConfigError, match="different training settings"):
        fit(float_model, _data(), TrainConfig(method="fp", **{**FAST, "lr": 0.5}), tmp_path, model_meta=toy_meta,
            resume=True, progress=False, log=_quiet)


def test_labelled_methods_refuse_unlabeled_data(tmp_path, float_model, toy_meta):
    with pytest.raises(DataError, match="needs labels but the data has none; use --method sqakd"):
        fit(float_model, _data(labelled=False), TrainConfig(method="fp", **FAST), tmp_path, model_meta=toy_meta,
            progress=False, log=_quiet)


def test_held_out_split_is_deterministic_and_disjoint():
    ds = TensorDataset(torch.arange(100.0), torch.zeros(100))
    a_train, a_held = split_held_out(ds, ds, 0.1, seed=3)
    b_train, b_held = split_held_out(ds, ds, 0.1, seed=3)
    assert a_held.indices == b_held.indices and len(a_held) == 10
    assert not set(a_held.indices) & set(a_train.indices)


@pytest.mark.parametrize("content,match", [
    (b"", "corrupt, truncated"),
    (b"PK\x03\x04 truncated zip", "corrupt, truncated"),
    (b"hi\n", "corrupt, truncated"),  # a short text file: torch.load raises KeyError
])
def test_bad_checkpoint_files(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_foreign_and_unsafe_checkpoints(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a sqakd-edge checkpoint"):
        load_checkpoint(foreign)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "sqakd-edge-checkpoint", "obj": _PoisonAfter([], 0)}, unsafe)
    with pytest.raises(CheckpointError, match="not a safe PyTorch file"):
        load_checkpoint(unsafe)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


class _BrokenAfter(_PoisonAfter):
    """Real data until ``clean`` items were read, then an unreadable image (a data error mid-epoch)."""

    def __getitem__(self, i):
        if self.reads >= self.clean:
            raise DataError("image 17 is corrupt")
        return super().__getitem__(i)


def test_force_keeps_the_old_run_until_the_new_one_has_a_checkpoint(tmp_path, float_model, toy_meta):
    cfg = TrainConfig(method="fp", **{**FAST, "epochs": 1})
    fit(float_model, _data(), cfg, tmp_path, model_meta=toy_meta, progress=False, log=_quiet)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert {"last.pt", "best.pt", "metrics.jsonl", "summary.json"} <= set(before)
    data = _data()
    broken = RunData(_BrokenAfter(data.train, clean=40), data.held_out, data.test, True, {"spec": "toy"})
    with pytest.raises(DataError, match="corrupt"):
        fit(float_model, broken, cfg, tmp_path, model_meta=toy_meta, force=True, progress=False, log=_quiet)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before  # the old run is back, byte for byte
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nothing set aside is left
    fit(float_model, _data(), cfg, tmp_path, model_meta=toy_meta, force=True, progress=False, log=_quiet)
    assert (tmp_path / "last.pt").read_bytes() != before["last.pt"]  # a finished new run replaces it
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_best_checkpoint_copy_does_not_follow_a_planted_link(tmp_path, float_model, toy_meta):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".best.pt.tmp").symlink_to(victim)  # the old fixed temp name
    fit(float_model, _data(), TrainConfig(method="fp", **{**FAST, "epochs": 1}), out, model_meta=toy_meta,
        progress=False, log=_quiet)
    assert victim.read_text() == "precious"
    assert not (out / "best.pt").is_symlink() and load_checkpoint(out / "best.pt")["kind"] == "fp"


def test_a_run_that_fails_before_writing_anything_leaves_no_empty_folder(tmp_path, float_model, toy_meta):
    data = _data()
    broken = RunData(_BrokenAfter(data.train, clean=0), data.held_out, data.test, True, {"spec": "toy"})
    out = tmp_path / "new-run"
    with pytest.raises(DataError):
        fit(float_model, broken, TrainConfig(method="fp", **{**FAST, "epochs": 1}), out, model_meta=toy_meta,
            progress=False, log=_quiet)
    assert not out.exists()


def test_disk_full_while_checkpointing_is_one_line_and_keeps_the_last_good_one(tmp_path, float_model, toy_meta,
                                                                                monkeypatch):
    import errno

    import sqakd_edge.checkpoint as checkpoint

    real_save, calls = torch.save, {"n": 0}

    def save_until_full(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second epoch's checkpoint: the disk is full
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save_until_full)
    with pytest.raises(TrainingError) as err:
        fit(float_model, _data(), TrainConfig(method="fp", **FAST), tmp_path, model_meta=toy_meta, progress=False,
            log=_quiet)
    text = str(err.value)
    assert "\n" not in text and "No space left on device" in text and "epoch 1) is kept" in text
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1  # the last good checkpoint is intact
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no half-written temp file
