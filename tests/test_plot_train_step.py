"""benchmarks/plot_train_step.py: the comparison plot of train_step.py's results, drawn for real (matplotlib)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _results(path: Path, ratio: float) -> str:
    rows = []
    for batch in (128, 256):
        rows.append({"kind": "fp32", "batch": batch, "threads": 2, "fit_step_s": 0.4})
        rows.append({"kind": "sqakd-lsq-ste", "batch": batch, "threads": 2, "fit_step_s": 0.4 * ratio})
    path.write_text(json.dumps({"rows": rows}))
    return str(path)


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "plot_train_step.py"), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_it_draws_one_bar_per_run_and_kind(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import plot_train_step
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    before = _results(tmp_path / "before.json", 1.45)
    label, ratios = plot_train_step.load(f"eager={before}")
    assert label == "eager"
    assert set(ratios) == {(128, 2), (256, 2)}
    assert ratios[(256, 2)] == {"sqakd-lsq-ste": pytest.approx(1.45)}
    out = tmp_path / "plots" / "train_step.png"
    proc = _run(f"before={before}", f"after={_results(tmp_path / 'after.json', 1.2)}", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.parent.glob(".*tmp*"))  # written atomically


def test_a_file_that_is_not_a_results_file_is_one_line(tmp_path):
    (tmp_path / "bad.json").write_text('{"rows": [{"kind": "fp32"}]}')
    proc = _run(str(tmp_path / "bad.json"), "--out", str(tmp_path / "x.png"))
    assert proc.returncode == 2
    assert "not a train_step.py results file" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.png").exists()
