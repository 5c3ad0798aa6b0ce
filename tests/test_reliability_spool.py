"""Journal outage: writes spool to the run directory while the journal is unreachable and are
replayed exactly once when it is back: a SQLite journal held locked by another process past the timeout,
a real PostgreSQL server stopped mid-run and restarted, and ``fastpose journal`` replaying a dead run's spool.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fastpose.journal.spool import SPOOL_NAME, SpoolingJournal, append_spool, read_spool, replay_spool
from fastpose.journal.store import JournalStore, MetricPoint

POINTS = ("train/loss", "val/loss", "val/rot_err_mean", "val/degree_mAP_10")
LABEL = "26-11-29/01-30-{}-SYNTH-resnet18-scratch"


def _epoch(journal: SpoolingJournal, run_id: int, epoch: int) -> None:
    """One epoch end as training writes it: the metric batch, a heartbeat, a note."""
    journal.log_metrics(run_id, [MetricPoint(n, 10.0 - epoch + j / 10, epoch, epoch * 100) for j, n in enumerate(POINTS)])
    journal.heartbeat(run_id, epoch=epoch, step=epoch * 100)
    journal.add_note(f"epoch {epoch}: x'); DROP TABLE notes;--", run_id=run_id)


def _check_exactly_once(store: JournalStore, run_id: int, epochs: int) -> None:
    hist = store.metric_history(run_id)
    assert len(hist) == epochs * len(POINTS), "metric rows lost or doubled"
    assert sorted((p.epoch, p.name) for p in hist) == sorted((e, n) for e in range(epochs) for n in POINTS)
    notes = [n.text for n in store.notes(run_id)]
    assert notes == [f"epoch {e}: x'); DROP TABLE notes;--" for e in range(epochs)]
    s = store.metric_summaries([run_id])[run_id]["val/loss"]
    assert (s.count, s.final, s.best_epoch) == (epochs, 10.0 - (epochs - 1) + 0.1, epochs - 1)


# ------------------------------------------------------------------------------------- exactly once


def test_replaying_a_spool_twice_writes_once(journal_store: JournalStore, tmp_path: Path) -> None:
    """Including a write that reached the journal although its caller saw an error (the same id is spooled)."""
    run = journal_store.start_run(name="TWICE", label=LABEL.format("TWICE"))
    spool = tmp_path / "run" / SPOOL_NAME
    journal = SpoolingJournal(journal_store, spool)
    _epoch(journal, run.id, 0)  # straight into the journal, ids recorded
    records = [{"id": f"w{i}", "kind": kind, "run_id": run.id, "at": datetime.now(timezone.utc).isoformat(),
                "args": args} for i, (kind, args) in enumerate([
                    ("log_metrics", {"points": [[n, 5.0, 1, 100, datetime.now(timezone.utc).isoformat()] for n in POINTS]}),
                    ("heartbeat", {"epoch": 1, "step": 100}),
                    ("add_note", {"text": "epoch 1: x'); DROP TABLE notes;--"}),
                    ("finish", {"status": "completed", "epoch": 1, "step": 100, "message": None}),
                ])]
    from fastpose.journal.spool import apply_write

    apply_write(journal_store, records[0])  # committed, but say the caller never heard back: it is spooled too
    for r in records:
        append_spool(spool, r)
    saved = spool.read_bytes()
    assert replay_spool(journal_store, spool) == (4, 0, 0) and not spool.exists()
    before = journal_store.counts()
    spool.write_bytes(saved)  # the same spool again (e.g. a copy restored, or two replayers)
    assert replay_spool(journal_store, spool) == (4, 0, 0)
    assert journal_store.counts() == before
    assert len(journal_store.metric_history(run.id)) == 2 * len(POINTS)
    assert [n.text for n in journal_store.notes(run.id)][-1] == "epoch 1: x'); DROP TABLE notes;--"
    assert journal_store.get_run(run.id).status == "completed"
    assert before["applied_writes"] == 3 + 4


def test_torn_last_line_and_refused_writes(journal_store: JournalStore, tmp_path: Path) -> None:
    run = journal_store.start_run(name="TORN", label=LABEL.format("TORN"))
    spool = tmp_path / SPOOL_NAME
    now = datetime.now(timezone.utc).isoformat()
    append_spool(spool, {"id": "a", "kind": "heartbeat", "run_id": run.id, "at": now, "args": {"epoch": 1}})
    # A write for this journal whose run is gone: refused for good, set aside with the reason.
    append_spool(spool, {"id": "b", "kind": "add_note", "run_id": 424242, "at": now, "args": {"text": "orphan"},
                         "journal": journal_store.journal_id()})
    with open(spool, "ab") as f:
        f.write(b'{"id": "c", "kind": "heartb')  # the writer died mid-append
    assert [r["id"] for r in read_spool(spool)] == ["a", "b"]
    assert replay_spool(journal_store, spool) == (1, 1, 0)
    rejected = (tmp_path / "journal-spool.rejected.jsonl").read_text().splitlines()
    assert len(rejected) == 1 and json.loads(rejected[0])["id"] == "b" and "424242" in rejected[0]
    assert journal_store.get_run(run.id).epoch == 1
    # A line without a journal id naming a run this journal does not have may be another journal's: kept.
    append_spool(spool, {"id": "d", "kind": "add_note", "run_id": 424242, "at": now, "args": {"text": "elsewhere"}})
    assert replay_spool(journal_store, spool) == (0, 0, 1)
    assert [r["id"] for r in read_spool(spool)] == ["d"]


# ------------------------------------------------------------------------------------- SQLite locked

LOCKER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")  # holds the write lock until stdin closes
    print("locked", flush=True)
    sys.stdin.read()
    conn.execute("ROLLBACK")
    """
)


def _hold_lock(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def test_sqlite_locked_past_the_timeout(fp_home: Path) -> None:
    url = f"sqlite:///{fp_home / 'fastpose.db'}"
    with JournalStore.open(url) as store:
        run = store.start_run(name="LOCKED", label=LABEL.format("LOCKED"))
    run_dir = fp_home / "runs" / run.label
    warnings: list[str] = []
    journal = SpoolingJournal(lambda: JournalStore.open(url, busy_timeout_s=0.3, write_attempts=1),
                              run_dir / SPOOL_NAME, retry_after_s=0.0, warn=warnings.append)
    _epoch(journal, run.id, 0)
    assert not (run_dir / SPOOL_NAME).exists()

    locker = _hold_lock(fp_home / "fastpose.db")
    try:
        t0 = time.perf_counter()
        for epoch in (1, 2, 3):
            _epoch(journal, run.id, epoch)  # training goes on: no exception
        blocked = time.perf_counter() - t0
        assert len(read_spool(run_dir / SPOOL_NAME)) == 9 and journal.spooled == 9
        assert blocked < 9 * 2.0, f"each spooled write should cost about one busy timeout, took {blocked:.1f} s"
        assert len(warnings) == 1 and "journal unreachable" in warnings[0] and "database is locked" in warnings[0]
    finally:
        _release(locker)

    done = journal.finish(run.id, epoch=3, step=300)  # run end: the spool goes in first, then the finish
    assert done is not None and done.status == "completed" and done.epoch == 3
    assert not (run_dir / SPOOL_NAME).exists() and journal.replayed == 9
    with JournalStore.open(url) as store:
        _check_exactly_once(store, run.id, epochs=4)
        assert store.counts()["applied_writes"] == 4 * 3 + 1
        # replayed rows keep the time they were written, not the time of the replay
        times = [p.time for p in store.metric_history(run.id, "val/loss")]
        assert times == sorted(times) and times[-1] < done.ended_at
    journal.close()


CHILD = textwrap.dedent(
    """
    import sys
    from fastpose.journal.spool import SpoolingJournal
    from fastpose.journal.store import JournalStore, MetricPoint
    url, run_id, run_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    journal = SpoolingJournal.for_run(run_dir, url, busy_timeout_s=0.3, write_attempts=1)
    for epoch in range(3):
        journal.log_metrics(run_id, [MetricPoint("val/loss", 3.0 - epoch, epoch, epoch)])
        journal.heartbeat(run_id, epoch=epoch, step=epoch)
    journal.add_note("spooled note", run_id=run_id)
    print("finished:", journal.finish(run_id, epoch=2, step=2), flush=True)
    """
)


def test_fastpose_journal_replays_a_finished_runs_spool(fp_home: Path, run_cli) -> None:  # noqa: ANN001
    """The run ended while the journal was locked: its spool waits in the run directory for the next listing."""
    url = f"sqlite:///{fp_home / 'fastpose.db'}"
    with JournalStore.open(url) as store:
        run = store.start_run(name="DEADLOCK", label=LABEL.format("DEADLOCK"))
    run_dir = fp_home / "runs" / run.label
    locker = _hold_lock(fp_home / "fastpose.db")
    try:
        child = subprocess.run([sys.executable, "-c", CHILD, url, str(run.id), str(run_dir)],
                               capture_output=True, text=True, timeout=120)
    finally:
        _release(locker)
    assert child.returncode == 0, child.stderr
    assert "finished: None" in child.stdout and "still unreachable" in child.stderr
    assert len(read_spool(run_dir / SPOOL_NAME)) == 8

    proc = run_cli("journal", "--json", check=True)
    assert "replayed 8 journal writes" in proc.stderr
    (shown,) = json.loads(proc.stdout)
    assert shown["status"] == "completed" and shown["final_metrics"]["val/loss"] == 1.0
    assert [n["text"] if isinstance(n, dict) else n for n in shown["notes"]] == ["spooled note"]
    assert not (run_dir / SPOOL_NAME).exists()
    again = run_cli("journal", "--json", check=True)
    assert "replayed" not in again.stderr
    with JournalStore.open(url) as store:
        assert store.counts()["metrics"] == 3 and store.counts()["notes"] == 1


# ------------------------------------------------------------------------------------- PostgreSQL down


def _pg_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateServer:
    """A PostgreSQL server of this test's own (.ci/start-postgres), so stopping it disturbs no other test."""

    def __init__(self, root: Path) -> None:
        self.root, self.port, self.bindir = root, _free_port(), _pg_bindir()
        env = {**os.environ, "FASTPOSE_PG_PORT": str(self.port), "FASTPOSE_PG_DIR": str(root)}
        script = Path(__file__).resolve().parents[1] / ".ci" / "start-postgres"
        out = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise RuntimeError(f"start-postgres failed: {out.stderr[-2000:]}")
        self.url = out.stdout.strip().splitlines()[-1]

    def _ctl(self, *args: str) -> None:
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), *args]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        self._ctl("-l", str(self.root / "log"), "-w", "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off", "start")


@pytest.fixture
def private_pg(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    if _pg_bindir() is None:
        if os.environ.get("FASTPOSE_REQUIRE_PG") == "1":
            pytest.fail("FASTPOSE_REQUIRE_PG=1 but no PostgreSQL server binaries under /usr/lib/postgresql")
        pytest.skip("PostgreSQL server binaries not installed (.ci/start-postgres installs them)")
    root = Path(f"/tmp/fp-spool-{os.getpid()}-{_free_port()}")  # short: the socket path has a length limit
    server = PrivateServer(root)
    try:
        yield server
    finally:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - already stopped by the test
            pass
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_postgresql_stopped_mid_run_and_restarted(private_pg: PrivateServer, tmp_path: Path) -> None:
    url = private_pg.url
    with JournalStore.open(url) as store:
        run = store.start_run(name="PGDOWN", label=LABEL.format("PGDOWN"))
    warnings: list[str] = []
    journal = SpoolingJournal(lambda: JournalStore.open(url, busy_timeout_s=2, write_attempts=1),
                              tmp_path / "run" / SPOOL_NAME, retry_after_s=0.0, warn=warnings.append)
    _epoch(journal, run.id, 0)

    private_pg.stop()
    t0 = time.perf_counter()
    for epoch in (1, 2):
        _epoch(journal, run.id, epoch)
    assert time.perf_counter() - t0 < 30
    assert journal.spooled == 6 and len(read_spool(tmp_path / "run" / SPOOL_NAME)) == 6
    assert len(warnings) == 1 and "journal unreachable" in warnings[0]
    assert journal.flush() is False  # still down: kept for later

    private_pg.start()
    _epoch(journal, run.id, 3)  # the first write after the outage replays the spool first, in order
    assert not (tmp_path / "run" / SPOOL_NAME).exists() and journal.replayed == 6
    done = journal.finish(run.id, epoch=3, step=300)
    assert done.status == "completed"
    journal.close()
    with JournalStore.open(url) as store:
        _check_exactly_once(store, run.id, epochs=4)
        assert store.get_run(run.id).epoch == 3
        assert store.counts()["applied_writes"] == 4 * 3 + 1


FLOCKER = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the writers' queue (db.sqlite_write_turn), held until stdin closes
    print("locked", flush=True)
    sys.stdin.read()
    """
)


def test_writer_queue_held_past_the_timeout(fp_home: Path) -> None:
    """A writer stuck in the queue times out like a locked database (and spools); the queue recovers."""
    url = f"sqlite:///{fp_home / 'fastpose.db'}"
    with JournalStore.open(url) as store:
        run = store.start_run(name="QUEUE", label=LABEL.format("QUEUE"))
    journal = SpoolingJournal(JournalStore.open(url, busy_timeout_s=0.3, write_attempts=1),
                              fp_home / "runs" / run.label / SPOOL_NAME, retry_after_s=0.0, warn=lambda _: None)
    holder = subprocess.Popen([sys.executable, "-c", FLOCKER, str(fp_home / "fastpose.db.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    try:
        t0 = time.perf_counter()
        _epoch(journal, run.id, 0)
        assert time.perf_counter() - t0 < 5 and journal.spooled == 3
    finally:
        _release(holder)
    t0 = time.perf_counter()
    _epoch(journal, run.id, 1)  # the abandoned waits let go of the queue: the spool and this epoch go in
    assert time.perf_counter() - t0 < 5 and journal.replayed == 3
    with JournalStore.open(url) as store:
        _check_exactly_once(store, run.id, epochs=2)
    journal.store.close()
