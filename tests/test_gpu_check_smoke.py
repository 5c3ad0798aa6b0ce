"""The prepared GPU check (tests/bench/gpu_check.sh) rehearsed on the CPU at tiny sizes, so it cannot rot while
no GPU is at hand: every step runs through the same script and lands in the one JSON file."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "bench" / "gpu_check.sh"


@pytest.mark.slow
def test_cpu_smoke_runs_every_step_into_one_json_file(tmp_path: Path) -> None:
    out, home = tmp_path / "check" / "gpu_check.json", tmp_path / "home"
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("FASTPOSE_JOURNAL_URL", None)
    proc = subprocess.run(["bash", str(SCRIPT), "--cpu-smoke", "--out", str(out), "--home", str(home)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())  # strict JSON: no NaN anywhere
    assert result["mode"] == "cpu-smoke" and result["machine"]["device"] == "cpu"
    steps = result["steps"]
    assert list(steps) == ["demo", "train_rate", "inference", "ddp", "determinism", "inference_compiled"]
    assert not any("error" in s or "skipped" in s and s["skipped"] != "not in this mode" for s in steps.values())
    demo = steps["demo"]
    assert demo["exit_code"] == 0 and demo["status"] == "completed" and demo["wall_s"] > 0
    assert "--render-device accelerator" in demo["command"]
    assert {"val/loss", "train/loss", "val/10deg"} <= set(demo["final_metrics"])
    rates = steps["train_rate"]["sizes"]
    assert set(rates) == {"32x32", "96x64"}  # the demo's square and the rectangle standing in for 640x480
    assert rates["32x32"]["run"] == "GPU_DEMO" and rates["96x64"]["run"] == "GPU_RATE"
    assert all(r["images_per_s"] > 0 and r["steps_timed"] >= 1 and math.isfinite(r["final_loss"])
               for r in rates.values())
    assert rates["96x64"]["steps_timed"] == 2  # 3 steps of one epoch: two step-to-step times
    native = steps["train_rate"]["native_run"]
    assert "--image-size 96x64" in native["command"] and native["status"] == "completed"
    rows = steps["inference"]["rows"]
    assert [(r["width"], r["height"], r["batch"]) for r in rows] == [(96, 64, 1), (96, 64, 2)]
    assert all(r["fps"] > 0 and 0 < r["post_share"] < 1 and r["forward_ms"] > 0 for r in rows)
    assert steps["ddp"]["status"] == "completed" and "--strategy ddp" in steps["ddp"]["command"]
    det = steps["determinism"]
    assert det["identical"] is True and det["points_compared"] > 10 and det["rerun"]["status"] == "completed"
    assert "--from GPU_DEMO" in det["rerun"]["command"]
    assert (home / "fastpose.db").is_file() and not (tmp_path / "journal").exists()


def test_without_a_gpu_the_full_check_refuses_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the full check would run")
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(SCRIPT), "--out", str(tmp_path / "x.json")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: no CUDA device visible to torch; run with --cpu-smoke for the "
                                                "CPU rehearsal"]
    assert not (tmp_path / "x.json").exists()
