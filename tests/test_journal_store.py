"""JournalStore: the write API training uses, reads, run references, lost runs, concurrent writers."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing as mp
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from fastpose.config import ConfigError
from fastpose.errors import FastposeError
from fastpose.journal import db
from fastpose.journal.git import GitState
from fastpose.metrics import DIRECTIONS, direction
from fastpose.journal.reader import SqliteReader, lost_after_seconds, parse_since
from fastpose.journal.access import open_reader
from fastpose.journal.store import JournalStore, MetricPoint, RunRecord, UnknownRunError

LABEL = "26-11-28/22-57-{}-SYNTH-resnet18-scratch"


def _start(store: JournalStore, name: str = "MSE_BASELINE", label: str | None = None, **kw) -> RunRecord:
    return store.start_run(name=name, label=label or LABEL.format(name), config={"name": name}, **kw)


def _set(store: JournalStore, run_id: int, **values) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.update(sa.table("runs", *(sa.column(k) for k in values))).where(sa.column("id") == run_id).values(**values))


def test_start_run_fills_process_and_returns_frozen_record(journal_store: JournalStore) -> None:
    git = GitState(is_repo=True, commit="a" * 40, branch="main", dirty=True, diff="diff --git a/x b/x\n+1\n",
                   untracked=("new.py",), message="msg")
    run = _start(journal_store, git=git, versions={"python": "3.11", "torch": "2.13.0", "lightning": "2.5"},
                 run_dir="/tmp/r", command="fastpose train --name MSE_BASELINE")
    assert run.status == "running" and run.pid == os.getpid() and run.host and run.cwd == os.getcwd()
    assert run.started_at.tzinfo is not None and run.config == {"name": "MSE_BASELINE"}
    assert run.torch_version == "2.13.0" and run.git_commit == "a" * 40 and run.git_dirty is True
    assert run.proc_start and run.proc_start > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.status = "completed"  # type: ignore[misc]
    assert journal_store.git_state(run.id) == git


def test_log_metrics_keeps_history_and_final_best_summaries(journal_store: JournalStore) -> None:
    run = _start(journal_store)
    journal_store.log_metrics(run.id, [MetricPoint("val/rot_err_mean", 30.0, 0, 10), MetricPoint("val/degree_mAP_10", 0.2, 0, 10)])
    journal_store.log_metrics(run.id, [MetricPoint("val/rot_err_mean", 12.0, 1, 20), MetricPoint("val/degree_mAP_10", 0.6, 1, 20)])
    journal_store.log_metrics(run.id, [MetricPoint("val/rot_err_mean", 15.0, 2, 30), MetricPoint("val/degree_mAP_10", float("nan"), 2, 30)])
    assert journal_store.summaries(run.id)["val/rot_err_mean"] == (15.0, 12.0)
    final, best = journal_store.summaries(run.id)["val/degree_mAP_10"]
    assert math.isnan(final) and best == 0.6
    s = journal_store.metric_summaries([run.id])[run.id]["val/rot_err_mean"]
    assert (s.best_epoch, s.best_step, s.count, s.direction) == (1, 20, 3, "min")
    hist = journal_store.metric_history(run.id, "val/rot_err_mean")
    assert [(p.value, p.epoch, p.step) for p in hist] == [(30.0, 0, 10), (12.0, 1, 20), (15.0, 2, 30)]
    assert len(journal_store.metric_history(run.id)) == 6


def test_directions_in_one_place() -> None:
    assert DIRECTIONS["val/degree_mAP_10"] == "max" and DIRECTIONS["val/miss_rate"] == "min"
    assert direction("test/some_loss") == "min" and direction("val/rot_err_p90") == "min"
    assert direction("val/acc") == "max" and direction("val/degree_mAP_45") == "max"


def test_finish_crash_and_notes(journal_store: JournalStore) -> None:
    a, b = _start(journal_store, "A"), _start(journal_store, "B")
    done = journal_store.finish(a.id, "completed", epoch=7, step=800)
    assert (done.status, done.epoch, done.step) == ("completed", 7, 800) and done.ended_at >= done.started_at
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nRuntimeError: CUDA out of memory'
    crashed = journal_store.crash(b.id, "RuntimeError", "CUDA out of memory", tb, epoch=2, step=100)
    assert (crashed.status, crashed.error_type, crashed.traceback) == ("crashed", "RuntimeError", tb)
    with pytest.raises(FastposeError, match="finish status"):
        journal_store.finish(a.id, "crashed")
    day = journal_store.add_note("tried a lower lr today")
    on_run = journal_store.add_note("  loss spikes at epoch 3  ", run_id=a.id)
    assert day.run_id is None and on_run.text == "loss spikes at epoch 3"
    assert [n.text for n in journal_store.notes(a.id)] == ["loss spikes at epoch 3"]
    assert [n.text for n in journal_store.day_notes()] == ["tried a lower lr today"]
    with pytest.raises(FastposeError):
        journal_store.add_note("   ")
    with pytest.raises(UnknownRunError):
        journal_store.add_note("x", run_id=999)
    assert journal_store.counts()["notes"] == 2


def test_list_runs_filters_and_order(journal_store: JournalStore) -> None:
    runs = [_start(journal_store, n) for n in ("A", "B", "A", "C")]
    journal_store.finish(runs[1].id)
    old = datetime(2026, 1, 2, 12, tzinfo=timezone.utc)
    _set(journal_store, runs[0].id, started_at=old)
    assert [r.id for r in journal_store.list_runs()] == [runs[3].id, runs[2].id, runs[1].id, runs[0].id]
    assert [r.id for r in journal_store.list_runs(name="A")] == [runs[2].id, runs[0].id]
    assert [r.id for r in journal_store.list_runs(status="completed")] == [runs[1].id]
    assert [r.id for r in journal_store.list_runs(limit=2)] == [runs[3].id, runs[2].id]
    assert runs[0].id not in [r.id for r in journal_store.list_runs(since=old + timedelta(days=1))]
    assert parse_since("2026-01-02").astimezone().date().isoformat() == "2026-01-02"
    with pytest.raises(FastposeError, match="--since"):
        parse_since("last tuesday")


def test_sqlite_reader_agrees_with_store(journal_store: JournalStore) -> None:
    if not journal_store._is_sqlite:
        pytest.skip("the sqlite3 fast path exists for SQLite journals only")
    a = _start(journal_store, "A", git=GitState(is_repo=False, error="not a git repository"))
    journal_store.log_metrics(a.id, [MetricPoint("val/loss", 1.5, 0, 1)])
    journal_store.add_note("n", run_id=a.id)
    journal_store.add_note("day")
    reader = open_reader(journal_store.url)
    assert isinstance(reader, SqliteReader)
    try:
        assert reader.list_runs() == journal_store.list_runs()
        assert reader.metric_summaries([a.id]) == journal_store.metric_summaries([a.id])
        assert reader.run_notes([a.id]) == journal_store.run_notes([a.id])
        assert reader.day_notes() == journal_store.day_notes()
        assert reader.git_state(a.id) == journal_store.git_state(a.id)
        assert reader.resolve("A") == journal_store.resolve("A")
    finally:
        reader.close()


# ------------------------------------------------------------------------------------ references


def test_resolve_id_label_prefix_name(journal_store: JournalStore) -> None:
    first = _start(journal_store, "QLOSS_BASELINE", "26-11-27/09-00-QLOSS_BASELINE-SYNTH-resnet18-scratch")
    newest = _start(journal_store, "QLOSS_BASELINE", "26-11-28/09-00-QLOSS_BASELINE-SYNTH-resnet18-scratch")
    other = _start(journal_store, "MSE_BASELINE", "26-11-28/10-30-MSE_BASELINE-SYNTH-resnet18-scratch")
    assert journal_store.resolve(str(first.id)).id == first.id
    assert journal_store.resolve(first.label).id == first.id
    assert journal_store.resolve("QLOSS_BASELINE").id == newest.id  # NAME: newest of that name
    assert journal_store.resolve("26-11-27").id == first.id  # unique prefix
    assert journal_store.resolve("26-11-28/10").id == other.id
    with pytest.raises(UnknownRunError, match="ambiguous.*26-11-28/09-00.*26-11-28/10-30"):
        journal_store.resolve("26-11-28/")
    with pytest.raises(UnknownRunError, match="no run matches 'QLOSS_BASELIN'; closest: QLOSS_BASELINE"):
        journal_store.resolve("QLOSS_BASELIN")
    with pytest.raises(UnknownRunError, match="no run matches '999'"):
        journal_store.resolve("999")
    with pytest.raises(UnknownRunError, match="empty"):
        journal_store.resolve("  ")


@pytest.mark.parametrize("bad", ["", "a b", "../etc", "x/y", "-lead", ".hidden", "a" * 101, "naïve", "a\\b"])
def test_invalid_names_refused_before_writing(journal_store: JournalStore, bad: str) -> None:
    before = journal_store.counts()
    with pytest.raises(ConfigError, match="invalid run name"):
        journal_store.start_run(name=bad, label=f"26-11-28/10-00-{bad}-SYNTH-resnet18-scratch")
    assert journal_store.counts() == before


def test_parent_must_exist(journal_store: JournalStore) -> None:
    parent = _start(journal_store, "A")
    child = _start(journal_store, "A", parent_id=parent.id, checkpoint="/tmp/last.ckpt")
    assert child.parent_id == parent.id and child.checkpoint == "/tmp/last.ckpt"
    with pytest.raises(UnknownRunError):
        _start(journal_store, "A", parent_id=12345)
    assert journal_store.counts()["runs"] == 2


# ------------------------------------------------------------------------------------ lost runs


def test_mark_lost_dead_pid_reused_pid_and_stale_heartbeat(journal_store: JournalStore) -> None:
    alive = _start(journal_store, "ALIVE")
    dead_proc = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_proc.wait()
    dead = _start(journal_store, "DEAD")
    _set(journal_store, dead.id, pid=dead_proc.pid)
    reused = _start(journal_store, "REUSED")
    _set(journal_store, reused.id, proc_start=alive.proc_start - 5000)  # same pid, started 5 s earlier
    stale = _start(journal_store, "STALE")
    _set(journal_store, stale.id, host="another-host", machine_id="another-machine", pid=1,
         heartbeat_at=datetime.now(timezone.utc) - timedelta(minutes=5))
    fresh_remote = _start(journal_store, "REMOTE")
    # Same hostname, but another PID namespace (a container with host networking): its pid means nothing
    # in our process table, so only the heartbeat can tell.
    _set(journal_store, fresh_remote.id, pid=1, pid_namespace=(fresh_remote.pid_namespace or 0) + 1)
    done = _start(journal_store, "DONE")
    journal_store.finish(done.id)

    lost = journal_store.mark_lost()
    assert sorted(r.name for r in lost) == ["DEAD", "REUSED", "STALE"]
    assert all(r.status == "lost" and r.ended_at is not None and r.error_message for r in lost)
    status = {r.name: r.status for r in journal_store.list_runs()}
    assert status == {"ALIVE": "running", "DEAD": "lost", "REUSED": "lost", "STALE": "lost",
                      "REMOTE": "running", "DONE": "completed"}
    assert journal_store.mark_lost() == []
    # the heartbeat limit as an argument; a live process on this host is never lost, however quiet
    _set(journal_store, alive.id, heartbeat_at=datetime.now(timezone.utc) - timedelta(hours=1))
    assert [r.name for r in journal_store.mark_lost(lost_after=0)] == ["REMOTE"]
    journal_store.heartbeat(stale.id, epoch=3, step=9)  # it was alive after all
    back = journal_store.get_run(stale.id)
    assert (back.status, back.epoch, back.step, back.ended_at) == ("running", 3, 9, None)


def test_process_start_is_psutil_time_and_old_rows_in_clock_ticks_still_match(journal_store: JournalStore) -> None:
    """proc_start is the process's start in ms since the epoch (psutil); rows written before hold Linux
    /proc clock ticks after boot, and are compared in that unit."""
    import psutil

    run = _start(journal_store, "NOW")
    assert abs(run.proc_start - psutil.Process().create_time() * 1000) <= 1
    assert run.proc_start > 10**12  # ms since the epoch, not ticks
    if not Path("/proc/self/stat").exists():
        pytest.skip("clock ticks are a Linux /proc unit")
    stat = Path("/proc/self/stat").read_bytes()
    ticks = int(stat[stat.rindex(b")") + 2:].split()[19])  # field 22, starttime
    old_same = _start(journal_store, "OLD_SAME")
    _set(journal_store, old_same.id, proc_start=ticks)
    old_reused = _start(journal_store, "OLD_REUSED")
    _set(journal_store, old_reused.id, proc_start=ticks - 5 * os.sysconf("SC_CLK_TCK"))  # 5 s earlier
    assert [r.name for r in journal_store.mark_lost()] == ["OLD_REUSED"]


def test_lost_after_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert lost_after_seconds() == 120.0
    monkeypatch.setenv("FASTPOSE_LOST_AFTER", "30")
    assert lost_after_seconds() == 30.0 and lost_after_seconds(5) == 5.0
    monkeypatch.setenv("FASTPOSE_LOST_AFTER", "soon")
    with pytest.raises(FastposeError, match="FASTPOSE_LOST_AFTER"):
        lost_after_seconds()


# ------------------------------------------------------------------------------------ concurrency

N_PROCS, N_BATCHES, N_POINTS = 8, 25, 8


def _writer(url: str, k: int, barrier) -> None:  # noqa: ANN001
    barrier.wait()  # all open (and create/migrate) the journal at the same moment
    store = JournalStore.open(url)
    run = store.start_run(name=f"W{k}", label=f"26-11-28/12-00-W{k}-SYNTH-resnet18-scratch")
    for b in range(N_BATCHES):
        store.log_metrics(run.id, [MetricPoint(f"train/m{j}", float(b * 100 + j), 0, b) for j in range(N_POINTS)])
        store.add_note(f"w{k} note {b}", run_id=run.id if b % 2 else None)
        store.heartbeat(run.id, step=b)
    store.finish(run.id)
    store.close()


@pytest.mark.slow
def test_eight_processes_write_at_once(journal_db_url: str) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(N_PROCS)
    procs = [ctx.Process(target=_writer, args=(journal_db_url, k, barrier)) for k in range(N_PROCS)]
    t0 = time.time()
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * N_PROCS, "a writer failed (see its stderr above)"
    with JournalStore.open(journal_db_url) as store:
        counts = store.counts()
        assert counts["runs"] == N_PROCS
        assert counts["metrics"] == N_PROCS * N_BATCHES * N_POINTS
        assert counts["notes"] == N_PROCS * N_BATCHES
        assert counts["metric_summaries"] == N_PROCS * N_POINTS
        for run in store.list_runs():
            assert run.status == "completed"
            s = store.metric_summaries([run.id])[run.id]["train/m3"]
            assert (s.count, s.final, s.best) == (N_BATCHES, (N_BATCHES - 1) * 100 + 3, 3.0)
    print(f"8 writers: {time.time() - t0:.1f} s")
    if db.sqlite_path(journal_db_url):
        assert not list(Path(db.sqlite_path(journal_db_url)).parent.glob("*.bak-*"))


def test_a_second_store_in_one_process_keeps_the_first_ones_writes_visible(tmp_path: Path) -> None:
    """Regression (found watching a live run): a training run opens a second store on the journal for its
    spool. Opening it read the file header with a plain open()/close(), and closing any descriptor of a file
    drops every POSIX lock the process holds on it, SQLite's included. The next outside reader then thought
    it was alone, checkpointed and deleted the WAL, and the run's later writes went to a WAL nobody else
    could see until the run ended. Real processes, real SQLite file."""
    path = tmp_path / "fastpose.db"
    url = f"sqlite:///{path}"
    first = JournalStore.open(url)
    run = _start(first)
    second = JournalStore.open(url)  # as the training run's spool does, in the same process
    outside = [sys.executable, "-c",
               "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
               "print(c.execute('SELECT COUNT(*) FROM notes').fetchone()[0]); c.close()", str(path)]
    assert subprocess.run(outside, capture_output=True, text=True, check=True).stdout.strip() == "0"
    first.add_note("written while the second store is open", run_id=run.id)
    assert subprocess.run(outside, capture_output=True, text=True, check=True).stdout.strip() == "1"
    second.close()
    first.close()
    assert not db.holds_connection(path)


def test_counts_cover_every_table() -> None:
    """`counts()` is how the bad-input tests see that nothing was written: it must see every table."""
    from fastpose.journal.models import Base
    from fastpose.journal.reader import COUNTED_TABLES

    assert set(COUNTED_TABLES) == set(Base.metadata.tables)
