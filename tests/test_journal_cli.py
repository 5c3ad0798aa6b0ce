"""`fastpose journal` and its subcommands through the real CLI (subprocesses) on a real SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from fastpose.journal.git import GitState
from fastpose.journal.store import JournalStore, MetricPoint

TB = textwrap.dedent(
    """\
    Traceback (most recent call last):
      File "fastpose/training/runner.py", line 88, in train
        trainer.fit(module, datamodule)
    RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"""
)
DIFF = "diff --git a/fastpose/pose/losses.py b/fastpose/pose/losses.py\n--- a/x\n+++ b/x\n@@ -1 +1,2 @@\n-old\n+new\n+more\n"


def _set(store: JournalStore, run_id: int, **values) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.update(sa.table("runs", *(sa.column(k) for k in values))).where(sa.column("id") == run_id).values(**values))


@pytest.fixture
def filled(journal_store: JournalStore) -> JournalStore:
    """Three runs over two days: an old completed baseline, a crashed run, a run whose process died."""
    s = journal_store
    base = s.start_run(
        name="MSE_BASELINE", label="26-11-27/09-15-MSE_BASELINE-SYNTH-resnet18-scratch",
        config={"loss": {"name": "mse"}, "train": {"lr": 0.002}},
        git=GitState(is_repo=True, commit="c0ffee" + "0" * 34, branch="main", dirty=True, diff=DIFF,
                     untracked=("scratch.py",), message="try mse"),
    )
    for epoch, (err, ap) in enumerate([(40.0, 0.1), (25.0, 0.3), (18.5, 0.42), (19.0, 0.41)]):
        s.log_metrics(base.id, [MetricPoint("val/rot_err_mean", err, epoch, epoch * 10),
                                MetricPoint("val/degree_mAP_10", ap, epoch, epoch * 10)])
    s.finish(base.id, epoch=3, step=30)
    s.add_note("baseline plateaus at 18 deg", run_id=base.id)
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    _set(s, base.id, started_at=yesterday, created_at=yesterday, ended_at=yesterday + timedelta(minutes=42))
    with s.engine.begin() as conn:
        conn.execute(sa.text("UPDATE notes SET created_at = :t"), {"t": yesterday.replace(tzinfo=None)})

    crash = s.start_run(name="PW_QLOSS", label="26-11-28/22-57-PW_QLOSS-SYNTH-resnet18-scratch")
    s.log_metrics(crash.id, [MetricPoint("train/loss", 2.0, 0, 5)])
    s.crash(crash.id, "RuntimeError", "CUDA out of memory. Tried to allocate 2.00 GiB", TB, epoch=0, step=5)

    ghost = s.start_run(name="GHOST", label="26-11-28/23-10-GHOST-SYNTH-resnet18-scratch")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _set(s, ghost.id, pid=dead.pid)
    s.add_note("switched to pw-qloss")  # a note on today
    return s


def test_import_and_journal_never_import_torch(filled: JournalStore) -> None:
    code = textwrap.dedent(
        """
        import sys
        import fastpose.cli
        heavy = ("torch", "lightning", "pytorch_lightning", "torchvision", "torchmetrics")
        assert not [m for m in sys.modules if m.split(".")[0] in heavy], "import fastpose.cli"
        from fastpose.cli import main
        for argv in (["journal"], ["journal", "--json"], ["journal", "show", "MSE_BASELINE"]):
            sys.argv = ["fastpose", *argv]
            try:
                main()
            except SystemExit as exc:
                assert not exc.code, exc.code
            loaded = [m for m in sys.modules if m.split(".")[0] in heavy]
            assert not loaded, (argv, loaded)
        print("OK", "sqlalchemy" in sys.modules)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("OK")


def test_listing_on_up_to_date_sqlite_skips_sqlalchemy(filled: JournalStore) -> None:
    if not filled._is_sqlite:
        pytest.skip("the sqlite3 fast path exists for SQLite journals only")
    filled.mark_lost()  # otherwise the listing's own mark_lost takes the (SQLAlchemy) write path
    code = (
        "import sys; sys.argv = ['fastpose', 'journal']\n"
        "from fastpose.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code\n"
        "print('SQLA', [m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic', 'git')])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "SQLA []"


def test_journal_daily_log(filled: JournalStore, run_cli) -> None:  # noqa: ANN001
    out = run_cli("journal", check=True).stdout
    today = datetime.now().astimezone().date()
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).astimezone().date()
    assert out.index(f"{today:%Y-%m-%d}") < out.index(f"{yesterday:%Y-%m-%d}")  # newest day first
    line = lambda name: next(ln for ln in out.splitlines() if f" {name} " in ln)  # noqa: E731 - a run's row
    assert "crashed" in line("PW_QLOSS").split()  # the label shows the NAME (the day and time have columns)
    assert "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in out  # last traceback line
    assert "lost" in line("GHOST").split()  # marked lost first
    assert "completed" in line("MSE_BASELINE") and "42m00s" in line("MSE_BASELINE")  # duration
    # the primary metric, final value (a run journaled without train.monitor: what picked its checkpoint then)
    assert "val/rot_err_mean 19" in line("MSE_BASELINE")
    assert "baseline plateaus at 18 deg" in out and "switched to pw-qloss" in out
    assert filled.resolve("GHOST").status == "lost"


def test_journal_filters_and_json(filled: JournalStore, run_cli) -> None:  # noqa: ANN001
    runs = json.loads(run_cli("journal", "--json", check=True).stdout)
    assert [r["name"] for r in runs] == ["GHOST", "PW_QLOSS", "MSE_BASELINE"]
    base = runs[2]
    for key in ("id", "name", "label", "status", "started", "ended", "git_commit", "final_metrics", "notes"):
        assert key in base
    assert base["final_metrics"] == {"val/degree_mAP_10": 0.41, "val/rot_err_mean": 19.0}
    assert base["best_metrics"]["val/rot_err_mean"] == 18.5 and base["notes"] == ["baseline plateaus at 18 deg"]
    assert base["git_commit"].startswith("c0ffee") and base["status"] == "completed"

    names = lambda *a: [r["name"] for r in json.loads(run_cli("journal", "--json", *a, check=True).stdout)]  # noqa: E731
    assert names("--status", "crashed") == ["PW_QLOSS"]
    assert names("--name", "MSE_BASELINE") == ["MSE_BASELINE"]
    assert names("--limit", "1") == ["GHOST"]
    assert names("--since", "0d") == ["GHOST", "PW_QLOSS"]
    assert names("--since", f"{datetime.now().astimezone().date():%Y-%m-%d}") == ["GHOST", "PW_QLOSS"]
    out = run_cli("journal", "--status", "crashed", check=True).stdout
    assert "PW_QLOSS" in out and "MSE_BASELINE" not in out


def test_journal_show(filled: JournalStore, run_cli) -> None:  # noqa: ANN001
    out = run_cli("journal", "show", "MSE_BASELINE", check=True).stdout
    assert "26-11-27/09-15-MSE_BASELINE-SYNTH-resnet18-scratch" in out and "completed" in out
    assert "lr = 0.002" in out and "(default 0.003)" in out  # config: the value that is not the default, marked
    assert "c0ffee" in out and "main" in out and "dirty" in out and "scratch.py" in out
    assert "fastpose/pose/losses.py | +2 -1" in out  # diff stat
    import re

    # metric, direction, n, final, best (and its epoch, counted from 1: the third), min, history, max
    assert re.search(r"val/rot_err_mean\s+↓\s+4\s+19\s+18\.5\s+3\s+18\.5\s+\S+\s+40", out)
    assert re.search(r"val/degree_mAP_10\s+↑\s+4\s+0\.41\s+0\.42\s+3\s+0\.1\s+\S+\s+0\.42", out)
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█")  # sparkline of the history
    assert "baseline plateaus at 18 deg" in out

    out = run_cli("journal", "show", "26-11-28/22", check=True).stdout  # unique label prefix
    assert "PW_QLOSS" in out and "Traceback (most recent call last)" in out
    assert "trainer.fit(module, datamodule)" in out and "RuntimeError" in out
    ghost_id = filled.resolve("GHOST").id
    assert "GHOST" in run_cli("journal", "show", str(ghost_id), check=True).stdout


def test_journal_note_on_day_and_run(filled: JournalStore, run_cli) -> None:  # noqa: ANN001
    proc = run_cli("journal", "note", "remember to try lr 1e-3", check=True)
    assert proc.stdout.startswith("note #") and " on 20" in proc.stdout
    proc = run_cli("journal", "note", "PW_QLOSS", "OOM at batch 64; retry with 32", check=True)
    assert " on run #" in proc.stdout and "PW_QLOSS" in proc.stdout
    run = filled.resolve("PW_QLOSS")
    assert [n.text for n in filled.notes(run.id)] == ["OOM at batch 64; retry with 32"]
    out = run_cli("journal", check=True).stdout
    assert "remember to try lr 1e-3" in out and "OOM at batch 64; retry with 32" in out


def test_journal_note_edit_delete_and_bare_run_reference(filled: JournalStore, run_cli) -> None:  # noqa: ANN001
    run = filled.resolve("PW_QLOSS")
    before = filled.counts()["notes"]
    bare = run_cli("journal", "note", "PW_QLOSS")  # a run reference alone is a mistake, not a day note
    assert bare.returncode == 2 and "names run" in bare.stderr and filled.counts()["notes"] == before
    run_cli("journal", "note", "PW_QLOSS", "first wording", check=True)
    (note,) = [n for n in filled.notes(run.id) if n.text == "first wording"]
    assert f"#{note.id}" in run_cli("journal", "show", "PW_QLOSS", check=True).stdout
    run_cli("journal", "note", "--edit", str(note.id), "second wording", check=True)
    assert [n.text for n in filled.notes(run.id) if n.id == note.id] == ["second wording"]
    run_cli("journal", "note", "--delete", str(note.id), check=True)
    assert all(n.id != note.id for n in filled.notes(run.id)) and filled.counts()["notes"] == before
    for args, words in ((["--delete", str(note.id)], "no note with id"), (["--edit", "1"], "new TEXT"),
                        (["--delete", "1", "text"], "takes no text")):
        proc = run_cli("journal", "note", *args)
        assert proc.returncode == 2 and words in proc.stderr and filled.counts()["notes"] == before, proc.stderr


def test_journal_export(filled: JournalStore, run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    target = tmp_path / "log.md"
    proc = run_cli("journal", "export", str(target), check=True)
    assert "wrote 3 runs" in proc.stdout
    md = target.read_text()
    today = datetime.now().astimezone().date()
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).astimezone().date()
    assert md.startswith("# fastpose journal")
    assert md.index(f"## {today:%Y-%m-%d}") < md.index(f"## {yesterday:%Y-%m-%d}")
    assert "`26-11-27/09-15-MSE_BASELINE-SYNTH-resnet18-scratch`" in md
    assert "crashed: `RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB`" in md
    assert "  - baseline plateaus at 18 deg" in md and "note: switched to pw-qloss" in md
    assert "val/rot_err_mean 19" in md


def test_empty_journal(fp_home: Path, run_cli) -> None:  # noqa: ANN001
    proc = run_cli("journal", check=True)
    assert "empty" in proc.stdout
    assert json.loads(run_cli("journal", "--json", check=True).stdout) == []
    assert not (fp_home / "fastpose.db").exists()  # reading does not create a journal
    assert run_cli("journal", "note", "first day").returncode == 0
    assert "first day" in run_cli("journal", check=True).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["journal", "show", "NO_SUCH_RUN"], "no run matches 'NO_SUCH_RUN'"),
        (["journal", "show", "MSE_BASELIN"], "closest: MSE_BASELINE"),
        (["journal", "show", "26-11-28/"], "ambiguous"),
        (["journal", "show", "4242"], "no run matches '4242'"),
        (["journal", "note", "NO_SUCH_RUN", "text"], "no run matches"),
        (["journal", "note", "   "], "a note needs some text"),
        (["journal", "note", "MSE_BASELINE", ""], "a note needs some text"),
        (["journal", "note", "a", "b", "c"], "takes [RUN] TEXT"),
        (["journal", "--status", "exploded"], "--status 'exploded'"),
        (["journal", "--since", "last week"], "--since 'last week'"),
        (["journal", "--name", "../etc/passwd"], "invalid run name"),
        (["journal", "--name", "has space"], "invalid run name"),
        (["journal", "--limit", "-3"], "--limit"),
        (["journal", "export", "/nonexistent-dir/log.md"], "does not exist"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(filled: JournalStore, run_cli, args, message) -> None:  # noqa: ANN001
    filled.mark_lost()
    before = filled.counts()
    proc = run_cli(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert filled.counts() == before


def test_export_to_directory_refused(filled: JournalStore, run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    proc = run_cli("journal", "export", str(tmp_path))
    assert proc.returncode == 2 and "is a directory" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp"))
