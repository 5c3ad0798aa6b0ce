"""What a new user meets in the first hour, through the real CLI: `resume` answering a mistake before torch
loads, the journal found from a subdirectory (and, where there is none, where fastpose looked), `journal
export -`, `journal show --json` and its metrics first, `compare A B --csv`, `compare` refusing a run twice,
epochs counted from 1, one short resume note, `--from` notes that list only real changes, `--plot` titles
that do not rank what is not comparable, and screens that keep to the width they are given."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastpose.journal.records import GitState, MetricPoint

GIT = GitState(is_repo=True, commit="a" * 40, branch="main")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FASTPOSE_HOME", "FASTPOSE_JOURNAL_URL", "COLUMNS")}
    env.update(extra)
    return env


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastpose", *args], cwd=cwd, env=_env(**env), capture_output=True,
                          text=True, timeout=300)


def _journal(home: Path, runs: dict[str, dict] | None = None) -> dict[str, int]:
    """A journal at ``home`` with runs of these names (config overrides), each with a metric history."""
    from fastpose.config import RunConfig
    from fastpose.journal.store import JournalStore

    ids = {}
    home.mkdir(parents=True, exist_ok=True)
    with JournalStore.open(f"sqlite:///{home / 'fastpose.db'}") as store:
        for i, (name, updates) in enumerate((runs or {"DEMO": {}}).items()):
            config = RunConfig(name=name).override({"train.accelerator": "cpu", **updates}).to_dict()
            run = store.start_run(name=name, label=f"26-11-28/10-0{i}-{name}-SYNTHETIC-resnet18-scratch",
                                  config=config, git=GIT, run_dir=str(home / "runs" / name))
            for e in range(3):
                store.log_metrics(run.id, [MetricPoint("val/10deg", 0.1 * (e + 1) + i / 100, e, e * 10),
                                           MetricPoint("val/trans_err_median_cm", 5.0 - e, e, e * 10),
                                           MetricPoint("val/false_positive_rate", 0.5 - e / 10, e, e * 10),
                                           MetricPoint("val/loss", 2.0 - e / 2 - i / 10, e, e * 10)])
            store.finish(run.id, epoch=2, step=30)
            ids[name] = run.id
    return ids


# ------------------------------------------------------------------------------------------------ resume

def test_resume_refuses_a_mistyped_run_or_one_without_checkpoint_before_importing_torch(tmp_path: Path) -> None:
    """The answer comes before torch and Lightning are imported (seconds on a loaded machine); the timing
    itself is in tests/bench/bench_screens.py."""
    home = tmp_path / "home"
    _journal(home)
    code = ("import sys; from fastpose.cli import run; code = run(sys.argv[1:]); "
            "print(code, 'torch' in sys.modules, 'pytorch_lightning' in sys.modules)")
    for args, message in ((["resume", "DEMOO"], "no run matches 'DEMOO'; closest: DEMO"),
                          (["resume", "DEMO"], "has no checkpoint to resume from"),
                          (["resume", "DEMO", "--epochs", "0"], "has no checkpoint")):
        proc = subprocess.run([sys.executable, "-c", code, *args], env=_env(FASTPOSE_HOME=str(home)),
                              capture_output=True, text=True, timeout=300)
        assert proc.stdout.split() == ["2", "False", "False"], (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("error: ") and message in proc.stderr and len(proc.stderr.splitlines()) == 1


# ---------------------------------------------------------------------------------------- where the journal is

def test_the_journal_is_found_from_a_subdirectory_and_a_missing_one_says_where_fastpose_looked(tmp_path) -> None:
    project = tmp_path / "project"
    deep = project / "src" / "models"
    deep.mkdir(parents=True)
    _journal(project / "journal")
    listing = _cli("journal", cwd=deep, COLUMNS="100")
    assert listing.returncode == 0 and "DEMO" in listing.stdout, listing.stderr
    note = _cli("journal", "note", "DEMO", "found from below", cwd=deep)
    assert note.returncode == 0, note.stderr
    assert "found from below" in _cli("journal", "show", "DEMO", cwd=project).stdout
    # an explicit home wins over the search (as GIT_DIR does for git)
    other = tmp_path / "other"
    _journal(other, {"ELSEWHERE": {}})
    shown = _cli("journal", cwd=deep, FASTPOSE_HOME=str(other), COLUMNS="100").stdout
    assert "ELSEWHERE" in shown and "DEMO" not in shown
    # nowhere: one line saying where it looked and how to point at a journal; nothing created
    lost = tmp_path / "lost" / "deeper"
    lost.mkdir(parents=True)
    for args in (["journal", "show", "DEMO"], ["compare", "A", "B"], ["resume", "DEMO"]):
        proc = _cli(*args, cwd=lost)
        assert proc.returncode == 2 and proc.stderr.startswith("error: "), (args, proc.stderr)
        assert f"no journal/fastpose.db in {lost} or any directory above it" in proc.stderr
        assert "FASTPOSE_HOME=DIR" in proc.stderr and len(proc.stderr.splitlines()) == 1
    empty = _cli("journal", cwd=lost)
    assert empty.returncode == 0 and "no journal found" in empty.stdout and "FASTPOSE_HOME" in empty.stdout
    assert not any((tmp_path / "lost").rglob("fastpose.db"))
    named = _cli("journal", "show", "X", cwd=lost, FASTPOSE_HOME=str(tmp_path / "nohome"))
    assert f"no journal at {tmp_path / 'nohome' / 'fastpose.db'} ($FASTPOSE_HOME)" in named.stderr


# ------------------------------------------------------------------------------------------- journal show

def test_export_dash_writes_markdown_to_standard_output(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _journal(home)
    proc = _cli("journal", "export", "-", cwd=tmp_path, FASTPOSE_HOME=str(home))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("#") and "DEMO" in proc.stdout and not (tmp_path / "-").exists()


def test_journal_show_json_and_metrics_before_config_with_whole_names_at_80_columns(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ids = _journal(home, {"DEMO": {"loss.name": "mse"}})
    data = json.loads(_cli("journal", "show", "DEMO", "--json", cwd=tmp_path, FASTPOSE_HOME=str(home)).stdout)
    assert data["run"]["id"] == ids["DEMO"] and data["primary"] == "val/10deg"
    assert list(data["metrics"])[0] == "val/10deg"
    assert data["metrics"]["val/trans_err_median_cm"] == {"direction": "min", "final": 3.0, "best": 3.0,
                                                          "best_epoch": 2, "history": [5.0, 4.0, 3.0]}
    assert {"key": "loss.name", "value": "mse", "default": "qloss", "known_today": True} in data["config_not_default"]
    assert data["git"]["commit"] == "a" * 40 and data["checkpoints"] is None and data["evaluations"] == []
    for columns in ("80", "100"):
        out = _cli("journal", "show", "DEMO", cwd=tmp_path, FASTPOSE_HOME=str(home), COLUMNS=columns).stdout
        assert out.index("metrics (") < out.index("config:") < out.index("git (working directory)")
        assert max(len(line) for line in out.splitlines()) <= int(columns)
        for name in ("val/trans_err_median_cm", "val/false_positive_rate", "val/10deg"):
            assert re.search(rf"^{re.escape(name)}\s", out, re.M), (columns, name)
        best = next(line for line in out.splitlines() if line.startswith("val/trans_err_median_cm"))
        assert re.search(r"\b3\s+3\s+3\b", best)  # final 3, best 3 at epoch 3 (counted from 1)
        assert "…" not in out


# ----------------------------------------------------------------------------------------------- compare

def test_compare_csv_gives_one_row_per_run_and_a_run_twice_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ids = _journal(home, {"DEMO": {}, "OTHER": {"loss.name": "mse"}})
    proc = _cli("compare", "DEMO", "OTHER", "--csv", cwd=tmp_path, FASTPOSE_HOME=str(home))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [int(r["run_id"]) for r in rows] == [ids["DEMO"], ids["OTHER"]]
    assert [r["config.loss.name"] for r in rows] == ["qloss", "mse"]
    assert float(rows[1]["final.val/10deg"]) == pytest.approx(0.31) and rows[0]["best.val/loss"] == "1.0"
    for refs in (["DEMO", "DEMO"], ["DEMO", str(ids["DEMO"])]):
        twice = _cli("compare", *refs, cwd=tmp_path, FASTPOSE_HOME=str(home))
        assert twice.returncode == 2 and "different runs" in twice.stderr and f"run #{ids['DEMO']}" in twice.stderr
        assert len(twice.stderr.splitlines()) == 1


def test_plot_titles_do_not_rank_losses_the_table_marks_not_comparable(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _journal(home, {"DEMO": {}, "OTHER": {"loss.name": "mse"}})
    plot = tmp_path / "curves.png"
    proc = _cli("compare", "DEMO", "OTHER", "--plot", str(plot), cwd=tmp_path, FASTPOSE_HOME=str(home), COLUMNS="120")
    assert proc.returncode == 0 and plot.stat().st_size > 1000, proc.stderr
    assert re.search(r"^val/loss ≠", proc.stdout, re.M)  # the table: not comparable
    os.environ["FASTPOSE_HOME"] = str(home)  # the same figure, in-process, to read its titles
    try:
        from fastpose.screens.comparison import load_comparison
        from fastpose.screens.plot import plot_figure

        fig = plot_figure(load_comparison(["DEMO", "OTHER"]))
    finally:
        del os.environ["FASTPOSE_HOME"]
    titles = {ax.get_title().split(" ")[0]: ax.get_title() for ax in fig.axes if ax.get_title()}
    assert titles["val/loss"] == "val/loss (not comparable between these runs)"
    assert titles["val/10deg"] == "val/10deg (higher is better)"
    xs = [line.get_xdata() for ax in fig.axes for line in ax.get_lines()]
    assert all(list(x) == [1, 2, 3] for x in xs)  # epochs counted from 1


# ------------------------------------------------------------------------- epochs, --from and resume notes

@pytest.mark.slow
def test_epochs_from_one_and_notes_that_say_only_what_changed(tmp_path: Path) -> None:
    """A 1-epoch run, a run --from it with other display options only, and a resume of it to 2 epochs."""
    tiny = ["--image-size", "32", "--train-size", "8", "--val-size", "4", "--batch-size", "4", "--log-images", "0"]
    home = tmp_path / "home"
    env = {"FASTPOSE_HOME": str(home), "COLUMNS": "80"}
    a = _cli("train", "--name", "A", *tiny, "--epochs", "1", "--no-progress", cwd=tmp_path, **env)
    assert a.returncode == 0, a.stderr[-2000:]
    assert re.search(r"^epoch 1/1  val/10deg", a.stderr, re.M), a.stderr
    b = _cli("train", "--from", "A", "--name", "B", "--progress", "--log-images", "1", cwd=tmp_path, **env)
    assert b.returncode == 0, b.stderr[-2000:]
    c = _cli("resume", "A", "--epochs", "2", "--no-progress", cwd=tmp_path, **env)
    assert c.returncode == 0, c.stderr[-2000:]
    assert re.search(r"^epoch 2/2  val/10deg", c.stderr, re.M) and not re.search(r"^epoch 0", c.stderr, re.M)
    from fastpose.journal.store import JournalStore

    with JournalStore.open(f"sqlite:///{home / 'fastpose.db'}") as store:
        runs = {r.name: r for r in store.list_runs()}
        a_run, b_notes = runs["A"], [n.text for n in store.notes(runs["B"].id)]
        resumed = next(r for r in store.list_runs() if r.parent_id == a_run.id)
        c_notes = [n.text for n in store.notes(resumed.id)]
    # name and display options aside; the thread count (what else changes the numbers) is carried and said
    assert len(b_notes) == 1 and re.fullmatch(
        rf"config from run {a_run.id} \({re.escape(a_run.label)}\); unchanged; threads \d+, as run {a_run.id} used",
        b_notes[0]), b_notes
    assert c_notes == [f"resumed from #{a_run.id} A (completed); code: no git state to compare; "
                       "config: train.epochs 1 -> 2"]  # tmp_path is no git repository
    log = _cli("journal", cwd=tmp_path, **{**env, "COLUMNS": "100"}).stdout
    note_lines = [line for line in log.splitlines() if "resumed from #" in line]
    assert len(note_lines) == 1 and note_lines[0].rstrip().endswith("train.epochs 1 -> 2")  # one line
    shown = _cli("journal", "show", str(resumed.id), cwd=tmp_path, **env).stdout
    assert "last.ckpt" in " ".join(shown.split()).replace("│", "")  # the checkpoint's path is the run's record, in journal show
    assert "ended at      epoch 2, step" in shown


# ------------------------------------------------------------------------------- ties and piped widths

def _tied(home: Path, value: float) -> None:
    """Four runs in two groups (``train.lr``), every run's every metric point at ``value``."""
    from fastpose.config import RunConfig
    from fastpose.journal.store import JournalStore

    home.mkdir(parents=True, exist_ok=True)
    with JournalStore.open(f"sqlite:///{home / 'fastpose.db'}") as store:
        for i, lr in enumerate((1e-3, 1e-3, 2e-3, 2e-3)):
            name = f"TIE{i}"
            config = RunConfig(name=name).override({"train.accelerator": "cpu", "train.lr": lr,
                                                    "train.seed": i}).to_dict()
            run = store.start_run(name=name, label=f"26-11-28/10-0{i}-{name}-SYNTHETIC-resnet18-scratch",
                                  config=config, git=GIT, run_dir=str(home / "runs" / name))
            for e in range(2):
                store.log_metrics(run.id, [MetricPoint("val/10deg", value, e, e * 10),
                                           MetricPoint("val/loss", 1.0, e, e * 10)])
            store.finish(run.id, epoch=1, step=20)


def test_a_tie_is_said_as_a_tie_not_as_missing_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _tied(home, 0.0)
    proc = _cli("compare", "--by", "train.lr", "TIE0", "TIE1", "TIE2", "TIE3", cwd=tmp_path, FASTPOSE_HOME=str(home))
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "identical at every seed (0 in every run, no variance): not distinguishable" in text, proc.stdout
    assert "fewer than two groups" not in text and "beats" not in text
    report = json.loads(_cli("compare", "--by", "train.lr", "TIE0", "TIE1", "TIE2", "TIE3", "--json", cwd=tmp_path,
                             FASTPOSE_HOME=str(home)).stdout)
    assert "identical at every seed" in json.dumps(report)


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_piped_output_is_drawn_at_100_columns_unless_columns_says_otherwise(tmp_path: Path) -> None:
    """Output to a pipe has no terminal width: every screen is drawn at $COLUMNS when set, else at 100."""
    home = tmp_path / "home"
    _tied(home, 0.25)
    screens = [("journal",), ("journal", "show", "TIE0"), ("compare", "TIE0", "TIE2"),
               ("compare", "--by", "train.lr", "TIE0", "TIE1", "TIE2", "TIE3", "--per-class")]
    for args in screens:
        piped = _cli(*args, cwd=tmp_path, FASTPOSE_HOME=str(home)).stdout  # capture_output: a pipe, no COLUMNS
        assert _widest(piped) <= 100, (args, _widest(piped))
        for columns in (60, 140):
            sized = _cli(*args, cwd=tmp_path, FASTPOSE_HOME=str(home), COLUMNS=str(columns)).stdout
            assert _widest(sized) <= columns, (args, columns, _widest(sized))
    show = _cli("journal", "show", "TIE0", cwd=tmp_path, FASTPOSE_HOME=str(home)).stdout
    assert 80 < _widest(show) <= 100  # lines are no longer cut at rich's default of 80 when piped
    narrow = _cli("journal", "show", "TIE0", cwd=tmp_path, FASTPOSE_HOME=str(home), COLUMNS="80").stdout
    assert _widest(narrow) <= 80 and len(narrow.splitlines()) > len(show.splitlines())
