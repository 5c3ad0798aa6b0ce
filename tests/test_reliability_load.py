"""Load: 16 training-like processes write one journal at once, on SQLite and PostgreSQL.

Each writer starts a run, then per epoch logs one batch of metric rows (as the JournalCallback does at an
epoch end), heartbeats, and every few epochs adds a note; it finishes the run. A long reader holds the
journal open mid-read the whole time (a ``fastpose journal --json`` export with a slow consumer). Every
writer must exit 0, and every row must be there, counted per run: nothing lost, nothing doubled.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from fastpose.journal import db
from fastpose.journal.store import JournalStore, MetricPoint

N_WRITERS = 16
EPOCHS = 20
POINTS_PER_EPOCH = 25  # 20 x 25 = 500 metric rows per run
ROWS_PER_RUN = EPOCHS * POINTS_PER_EPOCH
NOTE_EVERY = 5  # epochs 0, 5, 10, 15 -> 4 notes per run
NOTES_PER_RUN = len(range(0, EPOCHS, NOTE_EVERY))
METRIC_NAMES = [f"train/m{j:02d}" for j in range(POINTS_PER_EPOCH)]


def _writer(url: str, k: int, barrier, out_dir: str) -> None:  # noqa: ANN001
    """One training run's journal traffic; writes its timings to ``out_dir/w<k>.json``."""
    barrier.wait()  # all open (and create/migrate) the journal at the same moment
    t0 = time.perf_counter()
    store = JournalStore.open(url)
    run = store.start_run(name=f"LOAD{k:02d}", label=f"26-11-29/01-00-LOAD{k:02d}-SYNTH-resnet18-scratch",
                          config={"k": k})
    latencies = []
    for epoch in range(EPOCHS):
        batch = [MetricPoint(name, float(epoch * 1000 + j), epoch, epoch * 100 + j)
                 for j, name in enumerate(METRIC_NAMES)]
        t = time.perf_counter()
        store.log_metrics(run.id, batch)
        store.heartbeat(run.id, epoch=epoch, step=epoch * 100 + POINTS_PER_EPOCH - 1)
        if epoch % NOTE_EVERY == 0:
            store.add_note(f"LOAD{k:02d} epoch {epoch}: it's \"fine\"", run_id=run.id)
        latencies.append(time.perf_counter() - t)
    store.finish(run.id, epoch=EPOCHS - 1, step=(EPOCHS - 1) * 100 + POINTS_PER_EPOCH - 1)
    store.close()
    Path(out_dir, f"w{k}.json").write_text(json.dumps(
        {"run_id": run.id, "total_s": time.perf_counter() - t0, "max_epoch_write_s": max(latencies)}))


def _long_reader(url: str, ready, stop, out_dir: str) -> None:  # noqa: ANN001
    """Hold a read transaction open mid-result-set until told to stop (a slow ``--json`` consumer)."""
    path = db.sqlite_path(url)
    if path is not None:
        conn = db.connect_sqlite(path)  # what SqliteReader (``fastpose journal``) uses
        conn.execute("BEGIN")
        cur = conn.execute("SELECT * FROM metrics ORDER BY id")
        cur.fetchone()
        seen = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    else:
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        conn = engine.connect()
        conn.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ")
        conn.exec_driver_sql("SELECT * FROM metrics ORDER BY id").fetchone()
        seen = conn.exec_driver_sql("SELECT COUNT(*) FROM runs").scalar()
    ready.set()
    stop.wait(timeout=300)
    # still inside the same transaction: the snapshot it started with
    again = (conn.execute if path is not None else conn.exec_driver_sql)("SELECT COUNT(*) FROM runs").fetchone()[0]
    conn.close()
    Path(out_dir, "reader.json").write_text(json.dumps({"seen_at_start": seen, "seen_at_end": again}))


@pytest.mark.slow
def test_sixteen_writers_and_a_long_reader(journal_db_url: str, tmp_path: Path) -> None:
    JournalStore.open(journal_db_url).close()  # the reader needs the schema; writers then open an up-to-date journal
    ctx = mp.get_context("spawn")
    out = tmp_path / "load"
    out.mkdir()
    ready, stop = ctx.Event(), ctx.Event()
    reader = ctx.Process(target=_long_reader, args=(journal_db_url, ready, stop, str(out)))
    reader.start()
    assert ready.wait(timeout=120), "the long reader never started"

    barrier = ctx.Barrier(N_WRITERS)
    writers = [ctx.Process(target=_writer, args=(journal_db_url, k, barrier, str(out))) for k in range(N_WRITERS)]
    t0 = time.perf_counter()
    for p in writers:
        p.start()
    for p in writers:
        p.join(timeout=600)
    wall = time.perf_counter() - t0
    stop.set()
    reader.join(timeout=60)
    assert [p.exitcode for p in writers] == [0] * N_WRITERS, "a writer failed (its traceback is above)"
    assert reader.exitcode == 0
    # the reader's transaction really was open during the load: its snapshot never saw a writer's run
    assert json.loads((out / "reader.json").read_text()) == {"seen_at_start": 0, "seen_at_end": 0}

    results = [json.loads((out / f"w{k}.json").read_text()) for k in range(N_WRITERS)]
    with JournalStore.open(journal_db_url) as store:
        runs = store.list_runs()
        assert sorted(r.name for r in runs) == [f"LOAD{k:02d}" for k in range(N_WRITERS)]
        per_run = {
            row["run_id"]: row["n"]
            for row in store._fetch("SELECT run_id, COUNT(*) AS n FROM metrics GROUP BY run_id")
        }
        notes = {
            row["run_id"]: row["n"]
            for row in store._fetch("SELECT run_id, COUNT(*) AS n FROM notes GROUP BY run_id")
        }
        distinct = store._fetch("SELECT COUNT(*) AS n FROM (SELECT DISTINCT run_id, name, epoch, step FROM metrics) d")
        for run in runs:
            assert per_run.get(run.id) == ROWS_PER_RUN, (run.name, per_run.get(run.id))
            assert notes.get(run.id) == NOTES_PER_RUN, (run.name, notes.get(run.id))
            assert (run.status, run.epoch) == ("completed", EPOCHS - 1)
            summary = store.metric_summaries([run.id])[run.id]
            assert len(summary) == POINTS_PER_EPOCH
            assert summary["train/m03"].count == EPOCHS
            assert summary["train/m03"].final == (EPOCHS - 1) * 1000 + 3
        counts = store.counts()
    written = N_WRITERS * ROWS_PER_RUN
    assert counts["metrics"] == written and distinct[0]["n"] == written  # none lost, none twice
    assert counts["notes"] == N_WRITERS * NOTES_PER_RUN
    backend = "sqlite" if db.sqlite_path(journal_db_url) else "postgresql"
    slowest = max(r["max_epoch_write_s"] for r in results)
    print(f"\nload[{backend}]: {N_WRITERS} writers, {written} metric rows written, "
          f"{written - counts['metrics']} lost, {wall:.1f} s wall, slowest epoch write {slowest * 1000:.0f} ms")
