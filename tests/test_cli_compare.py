"""`fastpose compare` on a journal written through the store API: no training, no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fastpose.journal.records import GitState, MetricPoint


def add_run(store, name: str, lr: float, curve: list[float], maps: list[float], git: GitState, status="completed"):
    config = {"name": name, "train": {"lr": lr, "epochs": len(curve)}, "loss": {"name": "qloss"}}
    run = store.start_run(name=name, label=f"26-11-28/10-00-{name}-SYNTHETIC-resnet18-scratch", config=config, git=git)
    store.log_metrics(run.id, [MetricPoint("val/rot_err_median", v, e, e * 10) for e, v in enumerate(curve)])
    store.log_metrics(run.id, [MetricPoint("val/degree_mAP_10", v, e, e * 10) for e, v in enumerate(maps)])
    if status == "completed":
        store.finish(run.id, epoch=len(curve) - 1, step=len(curve) * 10)
    return run


@pytest.fixture
def three_runs(journal_store):
    clean = GitState(is_repo=True, commit="a" * 40, branch="main")
    dirty = GitState(is_repo=True, commit="a" * 40, branch="main", dirty=True, diff="diff --git a/x b/x\n+1\n")
    other = GitState(is_repo=True, commit="b" * 40, branch="main")
    mse = add_run(journal_store, "MSE_BASELINE", 2e-3, [120, 90, 80], [0.0, 0.1, 0.2], clean)
    qloss = add_run(journal_store, "AGG_QLOSS", 2e-3, [110, 40, 12], [0.0, 0.3, 0.6], dirty)
    neglog = add_run(journal_store, "NEGLOG", 1e-3, [100, 150, 178], [0.05, 0.0, 0.0], other)
    return mse, qloss, neglog


def test_compare_json_names_the_winner_by_direction(three_runs, run_cli):
    mse, qloss, neglog = three_runs
    proc = run_cli("compare", "MSE_BASELINE", "AGG_QLOSS", str(neglog.id), "--json", check=True)
    data = json.loads(proc.stdout)
    assert [r["id"] for r in data["runs"]] == [mse.id, qloss.id, neglog.id]
    assert {"id", "name", "label", "status", "git_commit", "final_metrics", "notes"} <= set(data["runs"][0])
    err = data["metrics"]["val/rot_err_median"]
    assert err["direction"] == "min" and err["winner"] == qloss.id
    assert err["runs"][str(neglog.id)] == {"final": 178, "best": 100, "delta_vs_first": 98}
    ap = data["metrics"]["val/degree_mAP_10"]
    assert ap["direction"] == "max" and ap["winner"] == qloss.id
    assert ap["runs"][str(neglog.id)]["best"] == 0.05
    assert data["config_diff"] == {"train.lr": [2e-3, 2e-3, 1e-3]}  # the name is no config difference
    assert [r["code_vs_first"] for r in data["runs"]] == ["-", "other uncommitted changes", "other commit"]
    assert [r["epochs"] for r in data["runs"]] == [3, 3, 3]


def test_compare_screen_shows_runs_metrics_differences_and_trends(three_runs, run_cli, tmp_path):
    import os

    proc = run_cli("compare", "MSE_BASELINE", "AGG_QLOSS", "NEGLOG", "--plot", str(tmp_path / "c.png"), "--spark",
                   check=True, env={**os.environ, "COLUMNS": "220"})
    out = proc.stdout
    for text in ("MSE_BASELINE", "AGG_QLOSS", "NEGLOG", "val/rot_err_median", "train.lr", "other commit", "★",
                 "+98", "-68"):
        assert text in out, text
    assert "loss.name" not in out  # equal everywhere
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_errors_are_one_line(journal_store, run_cli):
    proc = run_cli("compare", "ONLY_ONE")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    proc = run_cli("compare", "NOPE", "NADA")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_compare_and_help_never_import_torch(three_runs):
    code = (
        "import sys\n"
        "from fastpose.cli import app\n"
        "for argv in (['--help'], ['compare', 'MSE_BASELINE', 'AGG_QLOSS'], ['compare', '1', '2', '--json']):\n"
        "    try:\n"
        "        app(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('LOADED', sorted(m for m in ('torch', 'pytorch_lightning', 'lightning') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOADED []" in proc.stdout, proc.stdout + proc.stderr


def test_building_the_commands_evaluates_no_string_annotations() -> None:
    """Every command builds the whole application; with string annotations (``from __future__ import
    annotations`` in a command module) Typer ``eval``s each of them on every start, 15-20 ms of each command.
    The command modules keep real annotations, evaluated once at import."""
    code = (
        "import builtins, sys\n"
        "from fastpose.cli import app\n"
        "calls = []\n"
        "real = builtins.eval\n"
        "builtins.eval = lambda *a, **k: (calls.append(a[0]), real(*a, **k))[1]\n"
        "for argv in (['--help'], ['journal', '--help'], ['train', '--help']):\n"
        "    try:\n"
        "        app(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "builtins.eval = real\n"
        "print('EVALS', len(calls), calls[:5])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "EVALS 0 []" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
