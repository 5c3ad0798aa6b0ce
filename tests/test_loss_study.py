"""The loss study's quick mode through its real script (real `fastpose train` subprocesses, a real journal).

The full study is what the README reports (``python tests/bench/loss_study.py --jobs 2``); CI runs this
smaller version and checks that its ordering holds: the fixed QLoss beats the MSE baseline and the lab's
"-log" sign fix is the worst of all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def test_quick_study_ordering_qloss_beats_mse_and_neglog_is_worst(tmp_path: Path) -> None:
    out = tmp_path / "study.json"
    env = {k: v for k, v in os.environ.items() if k not in ("FASTPOSE_JOURNAL_URL", "FASTPOSE_HOME")}
    proc = subprocess.run(
        [sys.executable, "tests/bench/loss_study.py", "--quick", "--losses", "mse,qloss,qloss-neglog", "--jobs", "2",
         "--home", str(tmp_path / "home"), "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = json.loads(out.read_text())
    median = {e["loss"]: e["val/rot_err_median"]["mean"] for e in study["table"]}
    mean = {e["loss"]: e["val/rot_err_mean"]["mean"] for e in study["table"]}
    print(proc.stdout[-1500:])
    assert median["qloss"] < median["mse"], median
    assert median["qloss-neglog"] > max(median["qloss"], median["mse"]), median
    assert mean["qloss-neglog"] > max(mean["qloss"], mean["mse"]), mean
    assert all(r["status"] == "completed" and r["git_commit"] for r in study["rows"]), study["rows"]
    assert "| AGG_QLOSS | `qloss` |" in proc.stdout  # the summary table is printed
