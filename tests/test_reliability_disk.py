"""A full disk and a vanished journal, with real processes, real mounts and real files.

- A full disk during a run (a checkpoint that does not fit, or another writer filling the disk mid-epoch so
  that TensorBoard's event file, the journal and the spool all find no room) is a crash with its reason,
  "no space left on device while writing <file>", shown as one line; every metric journaled before it is in
  the journal or the run's spool, and the previous ``last.ckpt`` is whole.
- A journal deleted, moved, emptied or replaced by another journal while a run trains never receives (nor
  swallows) the run's writes: they go to the spool, the run exits 4 and its closing line says where they are;
  ``fastpose journal`` says which journal they wait for and creates none; putting the journal back replays
  them, exactly once.

The tmpfs cases need root and ``unshare`` (a private mount namespace); elsewhere they skip with the reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fastpose.journal import db
from fastpose.journal.spool import RESERVE_NAME, SPOOL_NAME, SpoolingJournal, read_spool
from fastpose.journal.store import JournalStore, MetricPoint

ROOT = os.geteuid() == 0
TINY = ["--image-size", "32", "--train-size", "16", "--val-size", "8", "--batch-size", "8", "--no-progress",
        "--log-images", "2"]  # two steps per epoch
LABEL = "26-12-01/10-{:02d}-{}-SYNTH-resnet18-scratch"
needs_unshare = pytest.mark.skipif(not ROOT or not shutil.which("unshare"),
                                   reason="needs root and unshare for a private tmpfs")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, FASTPOSE_HOME=str(home), COLUMNS="400", PYTHONUNBUFFERED="1", **extra)
    for key in ("FASTPOSE_DEBUG", "FASTPOSE_FAULT"):
        if key not in extra:
            env.pop(key, None)
    if "FASTPOSE_JOURNAL_URL" not in extra:
        env.pop("FASTPOSE_JOURNAL_URL", None)
    return env


def _cli(env: dict, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastpose", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _epoch_lines(stderr: str) -> list[int]:
    """The epochs the run reported finished (the console line each epoch end prints, counting from 1), as the
    journal indexes them (from 0)."""
    return [int(line.split()[1].split("/")[0]) - 1 for line in stderr.splitlines() if line.startswith("epoch ")]


def _journaled(home: Path, mounted: Path) -> tuple[dict, Path, dict[int, int], list[dict]]:
    """A home copied out of the tmpfs it was ``mounted`` on: (the run row, its run directory in the copy,
    metric points per epoch in the journal, the run's spool records)."""
    with contextlib.closing(sqlite3.connect(f"file:{home / 'fastpose.db'}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        (run,) = [dict(r) for r in conn.execute("SELECT * FROM runs")]
        per_epoch = dict(conn.execute("SELECT epoch, count(*) FROM metrics GROUP BY epoch").fetchall())
    run_dir = home / Path(run["run_dir"]).relative_to(mounted)
    return run, run_dir, per_epoch, read_spool(run_dir / SPOOL_NAME)


def _spooled_epochs(records: list[dict]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for record in records:
        if record["kind"] == "log_metrics":
            for point in record["args"]["points"]:
                counts[point[2]] = counts.get(point[2], 0) + 1
    return counts


def _checkpoint_epoch(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])


# ------------------------------------------------------------------------------------------ a full disk

IN_TMPFS = textwrap.dedent(
    """
    set -u
    mount -t tmpfs -o size="$SIZE" tmpfs "$HOME_DIR" || exit 90
    cd "$WORK"
    "$PY" -m fastpose train --name FULL --epochs 3 $TINY >"$OUT/train.out" 2>"$OUT/train.err"
    echo "train $?"
    "$PY" -m fastpose journal --json >"$OUT/full.json" 2>"$OUT/full.err"; echo "listing-full $?"
    rm -f "$HOME_DIR"/runs/*/*/fault-fill
    "$PY" -m fastpose journal >"$OUT/list.out" 2>"$OUT/list.err"; echo "listing $?"
    cp -a "$HOME_DIR/." "$OUT/home/"
    """
)


def _train_in_tmpfs(tmp_path: Path, size: str, **extra: str) -> tuple[dict[str, str], Path, Path]:
    """``fastpose train`` with its journal home on a fresh tmpfs of ``size``; then ``fastpose journal`` twice
    (with the disk as the run left it, then with the fault's filler removed). Returns (exit codes, out
    directory, the home as copied out of the mount)."""
    home, out, work = tmp_path / "home", tmp_path / "out", tmp_path / "work"
    for d in (home, out, out / "home", work):
        d.mkdir()
    env = _env(home, HOME_DIR=str(home), OUT=str(out), WORK=str(work), PY=sys.executable, SIZE=size,
               TINY=" ".join(TINY), **extra)
    proc = subprocess.run(["unshare", "-m", "sh", "-c", IN_TMPFS], env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode == 90 or "mount:" in proc.stderr:
        pytest.skip(f"cannot mount a private tmpfs here: {proc.stderr.strip()[:200]}")
    codes = dict(line.split() for line in proc.stdout.splitlines())
    return codes, out, out / "home"


def _one_line_crash(stderr: str, run_dir: Path) -> str:
    """The run's failure is one line, its closing line, naming the file being written; no traceback."""
    assert "Traceback" not in stderr, stderr
    about = [line for line in stderr.splitlines()
             if any(words in line.lower() for words in ("no space", "disk is full", "disk quota", "errno"))]
    assert len(about) == 1, stderr
    (line,) = about
    assert line == stderr.strip().splitlines()[-1], stderr
    assert line.startswith("run 1 ") and ": crashed" in line and "no space left on device while writing " in line
    written = line.split("no space left on device while writing ", 1)[1].split(")")[0]
    assert written.startswith(str(run_dir) + "/") and written != str(run_dir), line
    return written


@pytest.mark.slow
@needs_unshare
def test_a_checkpoint_that_fills_the_disk_is_a_crash_with_its_reason(tmp_path: Path) -> None:
    """The tiny run's checkpoint is about 35 MB: the first fits on 50 MB, the second (written beside it,
    then renamed over it) cannot."""
    codes, out, home = _train_in_tmpfs(tmp_path, "50m")
    err = (out / "train.err").read_text()
    assert codes["train"] == "1", err  # crashed (runner.py's exit codes)
    run, run_dir, journaled, spooled = _journaled(home, tmp_path / "home")
    written = _one_line_crash(err, Path(run["run_dir"]))
    assert "/checkpoints/" in written and written.endswith(".ckpt"), written

    assert run["status"] == "crashed" and run["error_type"] == "DiskFullError"
    assert run["error_message"] == f"no space left on device while writing {written}"
    assert "Traceback" in run["traceback"]  # kept in the journal for `journal show`
    finished = _epoch_lines(err)
    assert finished == [0, 1], err  # epoch 1's checkpoint is the one that did not fit
    both = {e: journaled.get(e, 0) + _spooled_epochs(spooled).get(e, 0) for e in finished}
    assert both[0] > 20 and both[1] == both[0], (journaled, spooled)

    checkpoints = run_dir / "checkpoints"
    assert _checkpoint_epoch(checkpoints / "last.ckpt") == 0  # the previous one, whole
    assert not [p.name for p in checkpoints.iterdir() if ".tmp-" in p.name or "link-tmp" in p.name]
    assert not (run_dir / RESERVE_NAME).exists()
    listing = (out / "list.out").read_text()
    assert codes["listing"] == "0" and "crashed" in listing and "no space left on device while writing" in listing


@pytest.mark.slow
@needs_unshare
def test_a_disk_filled_mid_epoch_by_another_writer_is_a_crash_with_its_reason(tmp_path: Path) -> None:
    """At step 3 (epoch 1) the disk is filled and stays full: TensorBoard's event file, the journal and the
    spool all find no room. The spool's reserve takes the run's last writes, its crash among them."""
    codes, out, home = _train_in_tmpfs(tmp_path, "100m", FASTPOSE_FAULT="fill@step:3")
    err = (out / "train.err").read_text()
    assert codes["train"] == "1", err
    assert _epoch_lines(err) == [0]
    written = _one_line_crash(err, Path(str(tmp_path / "home")) / "runs")
    assert "/tensorboard/events.out.tfevents." in written or written.endswith(".ckpt"), written

    # With the disk still full, the listing already shows the crash (from the journal or the spool).
    (shown,) = json.loads((out / "full.json").read_text())
    assert codes["listing-full"] == "0" and shown["status"] == "crashed", (out / "full.err").read_text()
    assert shown["error_message"] == f"no space left on device while writing {written}"
    run, run_dir, journaled, spooled = _journaled(home, tmp_path / "home")
    assert run["status"] == "crashed" and not spooled  # the second listing had room to replay everything
    assert journaled[0] > 20 and set(journaled) == {0}
    assert _checkpoint_epoch(run_dir / "checkpoints" / "last.ckpt") == 0
    assert not (run_dir / RESERVE_NAME).exists()


@needs_unshare
def test_spool_on_a_full_disk_uses_its_reserve_then_holds_writes_in_memory(tmp_path: Path) -> None:
    """The spool alone on a full disk (the journal elsewhere, unreachable): the reserve takes the first writes;
    once it is used up the writes wait in memory, in order, and land exactly once when there is room."""
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    with JournalStore.open(url) as store:
        run = store.start_run(name="SPOOLFULL", label=LABEL.format(1, "SPOOLFULL"))
        journal_id = store.journal_id()
    script = textwrap.dedent(
        """
        import json, os, sys
        from fastpose.journal.spool import SpoolingJournal, read_spool
        from fastpose.journal.store import JournalStore, MetricPoint
        from fastpose.faults import fill_disk
        url, run_id, run_dir, journal_id = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
        down = {"yes": True}
        def open_store():
            if down["yes"]:
                raise ConnectionError("journal down")
            return JournalStore.open(url, journal_id=journal_id)
        warnings = []
        journal = SpoolingJournal(open_store, os.path.join(run_dir, "journal-spool.jsonl"), retry_after_s=0,
                                  journal_id=journal_id, reserve_bytes=1 << 20, warn=warnings.append)
        fill_disk(__import__("pathlib").Path(run_dir) / "filler")
        def points(epoch):  # about 6 kB a line: more than a page, so a full disk refuses it
            return [MetricPoint("val/loss", 3.0 - epoch, epoch, epoch)] + [
                MetricPoint(f"val/extra_{i:03d}", float(i), epoch, epoch) for i in range(100)]
        for epoch in range(3):  # into the spool, on the reserve's room
            journal.log_metrics(run_id, points(epoch))
        in_spool = len(read_spool(journal.spool_path))
        fill_disk(__import__("pathlib").Path(run_dir) / "filler2")  # the reserve's room is taken too
        for epoch in range(3, 6):
            journal.log_metrics(run_id, points(epoch))
        note = journal.unsaved_note()
        os.remove(os.path.join(run_dir, "filler2"))
        down["yes"] = False
        journal.finish(run_id, epoch=5, step=5)
        print(json.dumps({"in_spool": in_spool, "note": note, "left": os.path.exists(journal.spool_path),
                          "warnings": warnings, "reserve": os.path.exists(os.path.join(run_dir, "journal-spool.reserve"))}))
        """
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    sh = f'mount -t tmpfs -o size=3m tmpfs "{run_dir}" || exit 90\n"{sys.executable}" -c "$SCRIPT" "$@"'
    proc = subprocess.run(["unshare", "-m", "sh", "-c", sh, "sh", url, str(run.id), str(run_dir), journal_id],
                          env=dict(os.environ, SCRIPT=script), capture_output=True, text=True, timeout=300)
    if proc.returncode == 90 or "mount:" in proc.stderr:
        pytest.skip(f"cannot mount a private tmpfs here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["in_spool"] == 3 and not result["reserve"]  # the reserve made the room for them
    note = result["note"]  # what a run's closing line would say at that moment
    assert f"3 journal writes of this run are kept in {run_dir / SPOOL_NAME}" in note, note
    assert "3 journal writes are lost" in note and "No space left on device" in note, note
    assert not result["left"] and len(result["warnings"]) == 1, result["warnings"]
    with JournalStore.open(url) as store:
        history = store.metric_history(run.id, "val/loss")
        assert [p.epoch for p in history] == [0, 1, 2, 3, 4, 5]  # in order, each once
        assert store.get_run(run.id).status == "completed"


# ------------------------------------------------------------------------------------------ a vanished journal

def _journal_lock(home: Path):  # noqa: ANN202 - a context manager
    """Hold the journal writers' queue (``db.sqlite_write_turn``'s flock): no run writes meanwhile."""
    class Turn:
        def __enter__(self) -> None:
            self.fd = os.open(home / "fastpose.db.lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)

        def __exit__(self, *exc: object) -> None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)

    return Turn()


def _metrics_in(path: Path) -> int:
    conn = None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        return conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        if conn is not None:
            conn.close()  # a reader left open would keep the journal's WAL in use


def _train_and(home: Path, cwd: Path, act) -> tuple[subprocess.CompletedProcess, dict]:  # noqa: ANN001
    """Train 4 epochs; once epoch 0's metrics are in the journal, ``act(home)`` (while the run trains, with
    the writers' queue held so that no write is half in); returns the finished process and what act returned."""
    env = _env(home, FASTPOSE_FAULT="sleep:0.4@step:0")
    proc = subprocess.Popen([sys.executable, "-m", "fastpose", "train", "--name", "VANISH", "--epochs", "4", *TINY],
                            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while _metrics_in(home / "fastpose.db") == 0:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    with _journal_lock(home):
        assert proc.poll() is None, "the run ended before the journal could be taken away"
        acted = act(home)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), acted


def _backup(path: Path, target: Path) -> None:
    src, dst = sqlite3.connect(path), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _vanished_run(proc: subprocess.CompletedProcess, home: Path, why: str) -> tuple[Path, list[dict]]:
    """Exit 4; one warning when it happened and the closing line, both saying where the writes are."""
    err = proc.stderr
    assert proc.returncode == 4, err
    assert "Traceback" not in err and _epoch_lines(err) == [0, 1, 2, 3], err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    closing = err.strip().splitlines()[-1]
    assert len(warnings) == 1 and why in warnings[0], err
    assert closing.startswith("run 1 ") and ": completed;" in closing and why in closing, closing
    (run_dir,) = (home / "runs").glob("*/*")
    spool = run_dir / SPOOL_NAME
    assert str(spool) in warnings[0] and str(spool) in closing and "`fastpose journal`" in closing
    return run_dir, read_spool(spool)


@pytest.mark.slow
def test_a_journal_deleted_while_training_keeps_the_run_in_its_spool(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    backup = tmp_path / "journal-at-deletion.db"

    def delete(home: Path) -> str:
        _backup(home / "fastpose.db", backup)  # what the journal held when it was deleted
        (home / "fastpose.db").unlink()
        with contextlib.closing(sqlite3.connect(backup)) as conn:
            return conn.execute("SELECT journal_id FROM journal_identity").fetchone()[0]

    proc, journal_id = _train_and(home, cwd, delete)
    run_dir, spooled = _vanished_run(proc, home, f"the journal {home / 'fastpose.db'} is gone")
    assert not (home / "fastpose.db").exists()  # the run made no new journal
    assert not (home / "fastpose.db-wal").exists() and not (home / "fastpose.db-shm").exists()
    assert {r["journal"] for r in spooled} == {journal_id} and spooled[-1]["kind"] == "finish"
    with contextlib.closing(sqlite3.connect(backup)) as conn:
        before = dict(conn.execute("SELECT epoch, count(*) FROM metrics GROUP BY epoch").fetchall())
    per_epoch = before[0]
    assert {**before, **_spooled_epochs(spooled)} == {e: per_epoch for e in range(4)}  # every epoch, once

    listing = _cli(_env(home), "journal", cwd=cwd)
    assert listing.returncode == 0 and "The journal is empty" in listing.stdout, listing.stderr
    (line,) = [line for line in listing.stderr.splitlines() if line.strip()]
    assert f"spool {run_dir / SPOOL_NAME} waits for journal {journal_id}" in line
    assert f"there is no journal at {home / 'fastpose.db'} now" in line and "`fastpose journal` replays" in line
    assert not (home / "fastpose.db").exists()  # listing it created nothing either

    shutil.copyfile(backup, home / "fastpose.db")  # put it back: the next listing replays the run
    restored = _cli(_env(home), "journal", "--json", cwd=cwd)
    assert restored.returncode == 0 and f"replayed {len(spooled)} journal writes" in restored.stderr
    (shown,) = json.loads(restored.stdout)
    assert shown["status"] == "completed" and shown["epoch"] == 3
    with JournalStore.open(f"sqlite:///{home / 'fastpose.db'}") as store:
        history = store.metric_history(shown["id"])
        assert len(history) == 4 * per_epoch and not (run_dir / SPOOL_NAME).exists()


@pytest.mark.slow
def test_a_journal_replaced_by_another_journal_gets_none_of_the_runs_writes(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    with JournalStore.open(other_url) as other:
        other.add_note("another team's journal")
        other_id = other.journal_id()

    def replace(home: Path) -> str:
        with contextlib.closing(sqlite3.connect(f"file:{home / 'fastpose.db'}?mode=ro", uri=True)) as conn:
            mine = conn.execute("SELECT journal_id FROM journal_identity").fetchone()[0]
        os.replace(tmp_path / "other.db", home / "fastpose.db")
        return mine

    proc, journal_id = _train_and(home, cwd, replace)
    run_dir, spooled = _vanished_run(proc, home, f"the journal {home / 'fastpose.db'} was replaced by another file")
    assert {r["journal"] for r in spooled} == {journal_id} and spooled[-1]["kind"] == "finish"
    with JournalStore.open(f"sqlite:///{home / 'fastpose.db'}") as store:  # the other journal, untouched
        assert store.journal_id() == other_id
        counts = store.counts()
        assert counts["runs"] == 0 and counts["metrics"] == 0 and counts["notes"] == 1

    listing = _cli(_env(home), "journal", cwd=cwd)
    assert listing.returncode == 0, listing.stderr
    (line,) = [line for line in listing.stderr.splitlines() if line.strip()]
    assert f"waits for journal {journal_id}" in line and f"this is journal {other_id}" in line
    with JournalStore.open(f"sqlite:///{home / 'fastpose.db'}") as store:
        assert store.counts() == counts and len(read_spool(run_dir / SPOOL_NAME)) == len(spooled)


# ------------------------------------------------------------------------------------------ the bound store


def _bound(url: str, journal_id: str) -> JournalStore:
    return JournalStore.open(url, journal_id=journal_id, busy_timeout_s=1, write_attempts=1)


@pytest.mark.parametrize("change", ["delete", "move", "truncate", "replace", "remove directory"])
def test_a_bound_store_writes_only_into_the_file_it_opened(tmp_path: Path, change: str) -> None:
    folder = tmp_path / "journal"
    path = folder / "fastpose.db"
    url = f"sqlite:///{path}"
    with JournalStore.open(url) as store:
        run = store.start_run(name="BOUND", label=LABEL.format(2, "BOUND"))
        journal_id = store.journal_id()
    bound = _bound(url, journal_id)
    bound.log_metrics(run.id, [MetricPoint("val/loss", 1.0, 0, 1)])
    if change == "delete":
        path.unlink()
    elif change == "move":
        path.rename(path.with_name("moved.db"))
    elif change == "truncate":
        os.truncate(path, 0)
    elif change == "replace":
        with JournalStore.open(f"sqlite:///{tmp_path / 'other.db'}"):
            pass
        os.replace(tmp_path / "other.db", path)
    else:
        shutil.rmtree(folder)
    with pytest.raises(db.JournalChangedError) as refused:
        bound.log_metrics(run.id, [MetricPoint("val/loss", 2.0, 1, 2)])
    assert str(refused.value).startswith(f"the journal {path} ")
    with pytest.raises(db.JournalChangedError):
        bound.heartbeat(run.id)
    if change in ("delete", "remove directory"):
        assert not path.exists()  # nothing created at the path
    if change == "delete":
        assert not path.with_name("fastpose.db-wal").exists()  # the deleted file's WAL goes with it
    if change == "move":  # moved back: the same file, written again, its earlier writes whole
        path.with_name("moved.db").rename(path)
        bound.log_metrics(run.id, [MetricPoint("val/loss", 3.0, 2, 3)])
        assert [p.value for p in bound.metric_history(run.id, "val/loss")] == [1.0, 3.0]
    bound.close()


def test_a_bound_store_refuses_another_journal_even_at_open(tmp_path: Path) -> None:
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with JournalStore.open(a) as store:
        a_id = store.journal_id()
    with JournalStore.open(b):
        pass
    with pytest.raises(db.JournalChangedError, match="is now another journal"):
        JournalStore.open(b, journal_id=a_id)
    with pytest.raises(db.JournalChangedError, match="is gone"):
        JournalStore.open(f"sqlite:///{tmp_path / 'missing.db'}", journal_id=a_id)
    assert not (tmp_path / "missing.db").exists()


def test_a_dropped_or_recreated_postgresql_journal_is_refused(tmp_path: Path) -> None:
    from conftest import drop_pg_database, fresh_pg_database, pg_admin_engine

    admin = pg_admin_engine()
    url = fresh_pg_database(admin, "fastpose_gone")
    name = url.rsplit("/", 1)[1]
    try:
        with JournalStore.open(url) as store:
            run = store.start_run(name="PGONE", label=LABEL.format(3, "PGONE"))
            journal_id = store.journal_id()
        bound = _bound(url, journal_id)
        bound.log_metrics(run.id, [MetricPoint("val/loss", 1.0, 0, 1)])
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        with pytest.raises(db.JournalChangedError, match="is gone"):
            bound.log_metrics(run.id, [MetricPoint("val/loss", 2.0, 1, 2)])
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        with JournalStore.open(url) as store:  # a new journal under the old name: run 1 is someone else's
            store.start_run(name="OTHER", label=LABEL.format(4, "OTHER"))
        with pytest.raises(db.JournalChangedError, match="is now another journal"):
            bound.log_metrics(run.id, [MetricPoint("val/loss", 2.0, 1, 2)])
        bound.close()
        with JournalStore.open(url) as store:
            assert store.counts()["metrics"] == 0
    finally:
        drop_pg_database(admin, url)


def test_the_run_writer_spools_what_a_vanished_journal_cannot_take(tmp_path: Path) -> None:
    """``SpoolingJournal.for_run``: the journal deleted between two epochs; the writes after it are spooled,
    the closing note says where, and putting the journal back replays them exactly once."""
    path = tmp_path / "fastpose.db"
    url = f"sqlite:///{path}"
    with JournalStore.open(url) as store:
        run = store.start_run(name="WRITER", label=LABEL.format(5, "WRITER"))
        journal_id = store.journal_id()
    run_dir = tmp_path / "runs" / run.label
    warnings: list[str] = []
    journal = SpoolingJournal.for_run(run_dir, url, journal_id=journal_id, end_warning=False)
    journal._warn = warnings.append
    assert (run_dir / RESERVE_NAME).stat().st_size == 1 << 20
    journal.log_metrics(run.id, [MetricPoint("val/loss", 3.0, 0, 0)])
    _backup(path, tmp_path / "backup.db")
    path.unlink()
    for epoch in (1, 2):
        journal.log_metrics(run.id, [MetricPoint("val/loss", 3.0 - epoch, epoch, epoch)])
    assert journal.finish(run.id, epoch=2, step=2) is None
    note = journal.unsaved_note()
    assert note.startswith(f"the journal {path} is gone (deleted or moved); 3 journal writes of this run are kept "
                           f"in {run_dir / SPOOL_NAME}") and journal.needs_attention
    assert len(warnings) == 1 and "is gone" in warnings[0] and not path.exists()
    journal.close()
    assert not (run_dir / RESERVE_NAME).exists() and not path.exists()

    shutil.copyfile(tmp_path / "backup.db", path)
    from fastpose.journal.spool import replay_spools

    lines: list[str] = []
    assert replay_spools(tmp_path, lambda: JournalStore.open(url), lines.append) == 3
    with JournalStore.open(url) as store:
        assert [p.epoch for p in store.metric_history(run.id)] == [0, 1, 2]
        assert store.get_run(run.id).status == "completed"


def test_a_journal_whose_checkpoint_a_full_disk_cut_short_is_not_called_damaged(tmp_path: Path) -> None:
    """SQLite copies the WAL into the file page by page; a full disk can stop it after the header (which then
    counts more pages than the file has). The pages are still in the WAL beside it: not damaged."""
    path = tmp_path / "fastpose.db"
    with JournalStore.open(f"sqlite:///{path}") as store:
        run = store.start_run(name="CUT", label=LABEL.format(6, "CUT"))
        store.log_metrics(run.id, [MetricPoint(f"val/m{i}", float(i), 0, 1) for i in range(300)])
    size = path.stat().st_size
    cut = tmp_path / "cut.db"
    cut.write_bytes(path.read_bytes()[: size - 4096])
    with pytest.raises(db.JournalError, match="truncated"):
        db.check_sqlite_file(cut)
    cut.with_name("cut.db-wal").write_bytes(b"\0" * 32)
    db.check_sqlite_file(cut)  # the WAL beside it holds the rest


def test_the_stale_wal_of_a_deleted_journal_is_left_while_another_process_uses_it(tmp_path: Path) -> None:
    path = tmp_path / "fastpose.db"
    with JournalStore.open(f"sqlite:///{path}") as store:
        store.add_note("x")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            """
            import sqlite3, sys
            conn = sqlite3.connect(sys.argv[1], isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL"); conn.execute("SELECT count(*) FROM notes").fetchall()
            print("open", flush=True); sys.stdin.read()
            """), str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        path.unlink()
        assert not db.drop_orphan_wal(path) and path.with_name("fastpose.db-shm").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert db.drop_orphan_wal(path) or not path.with_name("fastpose.db-shm").exists()
    assert not path.with_name("fastpose.db-wal").exists()
