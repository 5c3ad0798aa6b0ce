"""The loss study's quick mode through its real script (real `fastpose train` subprocesses, a real journal).

The full study is what the README reports (``python tests/bench/loss_study.py --jobs 2``); CI runs this
smaller version and checks that its ordering holds: the fixed QLoss beats the MSE baseline and the lab's
"-log" sign fix is the worst of all. The quick budget is exactly the Quickstart demo's (``fastpose train``
defaults, checked below), so its AGG_QLOSS run is the demo and also checks that the demo learns.
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
        [sys.executable, "tests/bench/loss_study.py", "--quick", "--losses", "mse,qloss,qloss-neglog", "--jobs", "3",
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
    assert median["qloss"] < 60  # the demo (same budget, same loss) ends with a useful model


def test_quick_budget_is_the_demo_defaults() -> None:
    """`fastpose train --name DEMO` (the Quickstart) and the quick study's AGG_QLOSS run are the same run."""
    sys.path.insert(0, str(REPO / "tests" / "bench"))
    try:
        from loss_study import QUICK
    finally:
        sys.path.pop(0)
    from fastpose.config import RunConfig

    d = RunConfig(name="DEMO")
    assert d.loss.name == "qloss" and d.data.dataset == "synthetic" and d.model.backbone == "resnet18"
    assert (d.data.rotations, d.train.epochs, d.data.train_size, d.data.val_size, d.train.batch_size, d.train.lr,
            d.loss.rot_weight, d.train.seed) == (QUICK["rotations"], QUICK["epochs"], QUICK["train_size"],
                                                QUICK["val_size"], QUICK["batch_size"], QUICK["lr"],
                                                QUICK["rot_weight"], QUICK["seeds"][0])
