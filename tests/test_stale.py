"""What a killed run leaves is tidied by the next run in the same place, and the user's data comes back first."""

from __future__ import annotations

import os
import time

from sqakd_edge.config import TrainConfig
from sqakd_edge.stale import STALE_AFTER_S, remove_stale, restore_set_aside
from sqakd_edge.train.loop import fit

from .test_train_loop import FAST, _data, _quiet


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_only_temp_files_no_live_run_can_still_write_are_removed(tmp_path):
    old, fresh = tmp_path / ".last.pt.abc.tmp", tmp_path / ".last.pt.def.tmp"
    old.write_bytes(b"")  # a kill -9 during a checkpoint write: a 0-byte temp file
    fresh.write_bytes(b"partial")
    _age(old, STALE_AFTER_S + 10)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / ".best.pt.xyz.tmp"
    link.symlink_to(victim)
    _age(link, STALE_AFTER_S + 10)
    removed = remove_stale(tmp_path, [".last.pt.*.tmp", ".best.pt.*.tmp"])
    assert sorted(removed) == [".best.pt.xyz.tmp", ".last.pt.abc.tmp"]
    assert fresh.exists() and victim.read_text() == "keep"  # a live run's file and a link's target stay


def test_a_run_a_killed_force_set_aside_comes_back(tmp_path, float_model, toy_meta):
    cfg = TrainConfig(method="fp", **{**FAST, "epochs": 1})
    fit(float_model, _data(), cfg, tmp_path, model_meta=toy_meta, progress=False, log=_quiet)
    before = (tmp_path / "last.pt").read_bytes()
    aside = tmp_path / ".replaced-run.killed"  # what 'train --force' had done when it was killed
    aside.mkdir()
    for name in ("last.pt", "best.pt", "metrics.jsonl", "summary.json"):
        (tmp_path / name).rename(aside / name)
    assert restore_set_aside(tmp_path, ".replaced-run.*", "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == before and not aside.exists()


def test_a_killed_export_commit_gets_the_old_export_back(tmp_path):
    out = tmp_path / "export"
    aside = tmp_path / ".export.old.killed"
    (aside / "d").mkdir(parents=True)
    (aside / "d" / "manifest.json").write_text("{}")
    stale_tmp = tmp_path / ".export.tmp.killed"
    stale_tmp.mkdir()
    _age(stale_tmp, STALE_AFTER_S + 10)
    assert restore_set_aside(tmp_path, ".export.old.*", "export", inner="d") == ["export"]
    assert (out / "manifest.json").read_text() == "{}"
    assert remove_stale(tmp_path, [".export.tmp.*"]) == [".export.tmp.killed"]
