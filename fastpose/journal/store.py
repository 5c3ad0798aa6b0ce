"""JournalStore: what training calls to write a run into the journal, and every read (see reader.py).

Each write is one short transaction (``BEGIN IMMEDIATE`` on SQLite), retried with backoff when the
database is locked, so several runs writing at once neither fail nor lose rows. On SQLite the writers
also queue on a ``flock`` (``db.sqlite_write_turn``) so none waits far longer than the others. Every write
method takes ``at=`` (when it happened) and ``write_id=`` (apply at most once, recorded in ``applied_writes``):
what the outage spool (``fastpose.journal.spool``) replays with. Callers get frozen records, never ORM
objects. Contract: docs/ARCHITECTURE.md, "Journal store".
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import random
import socket
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from fastpose.config import validate_name
from fastpose.errors import FastposeError
from fastpose.journal import db
from fastpose.metrics import direction, is_better
from fastpose.journal.models import (
    AppliedWrite, GitStateRow, Metric, MetricSummary, Note, Run, SourceStateRow, UntrackedFile,
)
from fastpose.journal.reader import STATUSES, JournalReader, UnknownRunError, lost_after_seconds, machine_id, pid_namespace, process_started_ms
from fastpose.journal.records import GitState, MetricPoint, NoteRecord, RunRecord, SourceState
from fastpose.text import clean_str

__all__ = ["JournalStore", "GitState", "MetricPoint", "NoteRecord", "RunRecord", "STATUSES", "UnknownRunError"]

T = TypeVar("T")
FINISH_STATUSES = ("completed", "interrupted", "diverged")
_runs, _git, _metrics, _summaries, _notes, _applied, _source, _untracked = (
    m.__table__ for m in (Run, GitStateRow, Metric, MetricSummary, Note, AppliedWrite, SourceStateRow, UntrackedFile)
)
GONE_DATABASE = "is gone (its database was dropped or renamed)"
ALREADY_APPLIED = object()  # what a write with an id the journal already holds returns from _write_once


def _environment_value(value: Any, depth: int = 0) -> Any:
    """A run's environment as the journal keeps it: nested dicts of text keys and scalars (strings made
    valid UTF-8), anything else refused."""
    if isinstance(value, dict) and depth < 4:
        return {clean_str(str(k)): _environment_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, str):
        return clean_str(value)
    if value is None or isinstance(value, (bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise FastposeError(f"a run's environment holds nested text, numbers and flags only, not {type(value).__name__}")


def _now() -> datetime:
    return datetime.now(timezone.utc)


class JournalStore(JournalReader):
    """The journal at one URL. ``JournalStore.open()`` creates or upgrades the schema first."""

    def __init__(
        self, engine: Engine, url: str, *, write_attempts: int = 12, busy_timeout_s: float = db.BUSY_TIMEOUT_MS / 1000,
        journal_id: str | None = None,
    ) -> None:
        self.engine = engine
        self.url = url
        self.write_attempts = write_attempts
        self.busy_timeout_s = busy_timeout_s
        self._is_sqlite = engine.dialect.name == "sqlite"
        self._sqlite_file = db.sqlite_path(url) if self._is_sqlite else None
        self.bound_id = journal_id  # see open(journal_id=...)
        # A bound SQLite store keeps the journal file open itself (read-only, no lock): after the path changes
        # it tells a file moved elsewhere (still linked) from one deleted or replaced (see _check_bound_file).
        self._file_fd = _open_quietly(self._sqlite_file) if journal_id and self._sqlite_file else None
        self._file_id = _fd_id(self._file_fd)

    @classmethod
    def open(
        cls, url: str | None = None, *, busy_timeout_s: float | None = None, write_attempts: int = 12,
        journal_id: str | None = None,
    ) -> JournalStore:
        """The journal at ``url`` (default ``$FASTPOSE_JOURNAL_URL`` else ``<home>/fastpose.db``).

        ``busy_timeout_s`` (SQLite: wait for the write lock; server: connect timeout) and ``write_attempts``
        (tries while SQLite stays locked) bound how long one write can block: the spool uses short ones.
        ``journal_id``: bind the store to that journal (a run's writes go through such a store). It never
        creates a journal, and every write first checks that the journal is still that one (``_check_bound``);
        where it is not, the write raises ``db.JournalChangedError`` and nothing is written.
        """
        url = url or db.journal_url()
        if busy_timeout_s is None:
            from fastpose.environment import positive_seconds

            busy_timeout_s = positive_seconds("FASTPOSE_BUSY_TIMEOUT_S", db.BUSY_TIMEOUT_MS / 1000)
        timeout_ms = max(1, int(busy_timeout_s * 1000))
        engine = db.open_engine(url, busy_timeout_ms=timeout_ms, create=journal_id is None)
        store = cls(engine, url, write_attempts=write_attempts, busy_timeout_s=timeout_ms / 1000,
                    journal_id=journal_id)
        if journal_id is not None:
            found = store.journal_id()
            if found != journal_id:
                store.close()
                raise db.JournalChangedError(url, _another(found, journal_id), replaced=True)
        return store

    def close(self) -> None:
        self.engine.dispose()
        if self._file_fd is not None and not db.holds_connection(self._sqlite_file):
            # Only once no connection of this process has the file open: closing any descriptor of a file
            # drops the process's POSIX locks on it, SQLite's included (db._HELD).
            os.close(self._file_fd)
            self._file_fd = None

    def __enter__(self) -> JournalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- executors
    def _fetch(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if self.bound_id is not None:
            self._check_bound_file()
        try:
            with self.engine.connect() as conn:
                return [dict(row) for row in conn.execute(sa.text(sql), params or {}).mappings()]
        except sa.exc.DatabaseError as exc:
            if self.bound_id is not None and _database_gone(exc):
                raise db.JournalChangedError(self.url, GONE_DATABASE) from None
            raise self._damaged(exc) from None

    def _damaged(self, exc: BaseException) -> BaseException:
        """A damaged SQLite file becomes one clear JournalError; anything else is re-raised as it was."""
        if self._is_sqlite and db.is_corruption(exc):
            return db.damaged_journal(db.sqlite_path(self.url) or self.url, db._first_line(exc))
        return exc

    def _write(self, work: Callable[[Connection], T], attempts: int | None = None) -> T:
        """Run ``work`` in one write transaction, retried with backoff while the database is locked."""
        attempts = attempts or self.write_attempts
        if self.bound_id is not None:
            self._check_bound_file()  # before the turn too: a removed directory has no lock file either
        for attempt in range(attempts):
            try:
                with self._write_turn():
                    if self.bound_id is not None:
                        self._check_bound_file()
                    with self.engine.connect() as conn:
                        conn.execution_options(write=True)
                        with conn.begin():
                            if self.bound_id is not None:
                                self._check_bound_identity(conn)
                            return work(conn)
            except sa.exc.OperationalError as exc:
                message = str(exc.orig).lower()
                if self.bound_id is not None and _database_gone(exc):
                    raise db.JournalChangedError(self.url, GONE_DATABASE) from None
                if attempt == attempts - 1 or not ("locked" in message or "busy" in message):
                    raise
            except sa.exc.DatabaseError as exc:
                damaged = self._damaged(exc)
                if damaged is exc:
                    raise
                if self.bound_id is not None:  # a run's writes: keep them (spool) rather than fail them
                    self.engine.dispose()
                    raise db.JournalChangedError(self.url, f"is damaged ({db._first_line(exc)})") from None
                raise damaged from None
            # locked or busy past SQLite's own timeout: back off before the next attempt
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _check_bound_file(self) -> None:
        """A bound SQLite store: is the file at the path still the journal's? Costs one ``stat``.

        SQLite keeps its file open: once the file is deleted (or another file is moved over it) the open
        connections would go on writing into a file nobody can see. Gone, emptied or another file at the path
        (even a copy of this journal): the connections are let go and the write refused; the run's spool keeps
        it until ``fastpose journal`` replays it. Not even a copy is written to from here: SQLite leaves the
        old file's WAL at the path while any process still has the old file open, and the next file there
        is read together with it, so another journal would pass for this one (same identity row). That WAL is
        removed once no connection anywhere uses it (``db.drop_orphan_wal``).
        """
        if self._sqlite_file is None:
            return
        try:
            st = os.stat(self._sqlite_file)
        except (FileNotFoundError, NotADirectoryError):
            self._let_go()
            raise db.JournalChangedError(self.url, "is gone (deleted or moved)") from None
        if st.st_size == 0:
            self.engine.dispose()
            raise db.JournalChangedError(self.url, "is empty (truncated)")
        if self._file_id is not None and (st.st_dev, st.st_ino) != self._file_id:
            self._let_go()
            raise db.JournalChangedError(self.url, "was replaced by another file", replaced=True)

    def _let_go(self) -> None:
        """Close the connections to a journal file no longer at its path. Deleted (or replaced): its WAL,
        which SQLite leaves at the path, goes too. Moved elsewhere: the WAL stays, since the moved file's latest
        transactions are only there (SQLite names the WAL after the path it opened), and moving the file
        back pairs them again."""
        self.engine.dispose()
        try:
            deleted = self._file_fd is not None and os.fstat(self._file_fd).st_nlink == 0
        except OSError:
            deleted = False
        if deleted:
            db.drop_orphan_wal(self._sqlite_file)

    def _check_bound_identity(self, conn: Connection) -> None:
        """A bound store, inside the write's transaction: the journal's identity row is the bound one."""
        found = conn.execute(sa.text("SELECT journal_id FROM journal_identity WHERE id = 1")).scalar()
        if found != self.bound_id:
            raise db.JournalChangedError(self.url, _another(found, self.bound_id), replaced=True)

    def _write_turn(self):  # noqa: ANN202 - a context manager
        """SQLite: queue behind the other writers (``db.sqlite_write_turn``); servers need no such thing."""
        if self._sqlite_file is None:
            return contextlib.nullcontext()
        return db.sqlite_write_turn(self._sqlite_file, self.busy_timeout_s)

    def _write_once(self, kind: str, run_id: int | None, write_id: str | None, work: Callable[[Connection], T]) -> T:
        """``_write(work)``; with a ``write_id``, also record it in the same transaction, and skip the work
        (returning ALREADY_APPLIED) when the journal already holds that id: a replayed write lands once."""
        if write_id is None:
            return self._write(work)
        if not isinstance(write_id, str) or not 0 < len(write_id) <= 64:
            raise FastposeError(f"invalid journal write id {write_id!r}")

        def once(conn: Connection) -> Any:
            if conn.execute(sa.select(_applied.c.write_id).where(_applied.c.write_id == write_id)).first():
                return ALREADY_APPLIED
            result = work(conn)  # first: it checks that the run exists
            conn.execute(sa.insert(_applied).values(write_id=write_id, run_id=run_id, kind=kind, applied_at=_now()))
            return result

        try:
            return self._write(once)
        except sa.exc.IntegrityError:
            if self.is_applied(write_id):  # another process replayed the same write at the same moment
                return ALREADY_APPLIED  # type: ignore[return-value]
            raise

    def is_applied(self, write_id: str) -> bool:
        """Has the write with this id (see ``fastpose.journal.spool``) been applied?"""
        return bool(self._fetch("SELECT 1 AS x FROM applied_writes WHERE write_id = :w", {"w": write_id}))

    # ----------------------------------------------------------------- runs
    def start_run(
        self,
        *,
        name: str,
        label: str,
        config: dict[str, Any] | None = None,
        run_dir: str | None = None,
        command: str | None = None,
        git: GitState | None = None,
        versions: dict[str, str | None] | None = None,
        parent_id: int | None = None,
        checkpoint: str | None = None,
        source: SourceState | None = None,
        environment: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Record a new run, status ``running``, with this process's pid/host/user/cwd/start time; ``git`` is
        the working directory's git state, ``source`` the fastpose code's (``capture_source``), ``environment``
        what else changes its numbers (threads, device, precision, backends, versions:
        ``fastpose.training.machine``; ``set_environment`` replaces it once training starts)."""
        validate_name(name)
        db.check_run_label(label)
        versions = versions or {}
        now = _now()
        pid = os.getpid()
        row = {
            "name": name,
            "label": label,
            "status": "running",
            "created_at": now,
            "started_at": now,
            "heartbeat_at": now,
            "pid": pid,
            "host": socket.gethostname(),
            "proc_start": process_started_ms(pid) or None,
            "username": _username(),
            "command": clean_str(command if command is not None else " ".join(sys.argv)),
            "cwd": clean_str(os.getcwd()),
            "parent_id": parent_id,
            "config": config or {},
            "run_dir": run_dir,
            "checkpoint": checkpoint,
            "python_version": versions.get("python") or sys.version.split()[0],
            "torch_version": versions.get("torch"),
            "lightning_version": versions.get("lightning"),
            "machine_id": machine_id(),
            "pid_namespace": pid_namespace(),
            "environment": None if environment is None else _environment_value(environment),
        }

        def work(conn: Connection) -> int:
            if parent_id is not None and conn.execute(
                sa.select(_runs.c.id).where(_runs.c.id == parent_id)
            ).first() is None:
                raise UnknownRunError(f"parent run {parent_id} does not exist")
            run_id = conn.execute(sa.insert(_runs).values(**row)).inserted_primary_key[0]
            if git is not None:
                conn.execute(
                    sa.insert(_git).values(
                        run_id=run_id,
                        is_repo=git.is_repo,
                        commit_sha=git.commit,
                        branch=git.branch,
                        dirty=git.dirty,
                        diff=None if git.diff is None else clean_str(git.diff),
                        untracked=[clean_str(name) for name in git.untracked],  # file names need not be UTF-8
                        message=git.message,
                        error=git.error,
                    )
                )
            _insert_untracked(conn, run_id, "cwd", git)
            if source is not None and not source.same_as_cwd:
                _insert_untracked(conn, run_id, "source", source)
            if source is not None:
                conn.execute(
                    sa.insert(_source).values(
                        run_id=run_id,
                        fastpose_version=source.version,
                        location=None if source.location is None else clean_str(source.location),
                        is_repo=source.is_repo,
                        same_as_cwd=source.same_as_cwd,
                        commit_sha=source.commit,
                        branch=source.branch,
                        dirty=source.dirty,
                        diff=None if source.diff is None else clean_str(source.diff),
                        untracked=[clean_str(name) for name in source.untracked],
                        message=source.message,
                        error=source.error,
                    )
                )
            return run_id

        return self.get_run(self._write(work))

    def heartbeat(
        self, run_id: int, epoch: int | None = None, step: int | None = None, *,
        at: datetime | None = None, write_id: str | None = None,
    ) -> None:
        """The run is alive (a run marked ``lost`` by mistake comes back to ``running``).

        ``at``: when it was alive (default now; a replayed spool passes the original time). ``write_id``:
        apply at most once (see ``_write_once``); every write method takes these two.
        """
        values = _with_position({"heartbeat_at": at or _now()}, epoch, step)

        def work(conn: Connection) -> None:
            self._require(conn, run_id)
            conn.execute(sa.update(_runs).where(_runs.c.id == run_id).values(**values))
            conn.execute(
                sa.update(_runs)
                .where(_runs.c.id == run_id, _runs.c.status == "lost")
                .values(status="running", ended_at=None, error_message=None)
            )

        self._write_once("heartbeat", run_id, write_id, work)

    def log_metrics(
        self, run_id: int, points: Iterable[MetricPoint], *, at: datetime | None = None, write_id: str | None = None
    ) -> None:
        """Append ``points`` to the history and update final/best per metric, in one transaction."""
        points = list(points)
        for p in points:
            if not isinstance(p.name, str) or not p.name or len(p.name) > 200:
                raise FastposeError(f"invalid metric name {p.name!r}")
        if not points:
            return
        now = at or _now()
        rows = [
            {
                "run_id": run_id,
                "name": p.name,
                "epoch": p.epoch,
                "step": p.step,
                "value": _storable(p.value),
                "logged_at": p.time or now,
            }
            for p in points
        ]

        def work(conn: Connection) -> None:
            self._require(conn, run_id)
            append_metrics(conn, run_id, rows, now)
            conn.execute(sa.update(_runs).where(_runs.c.id == run_id).values(heartbeat_at=now))

        self._write_once("log_metrics", run_id, write_id, work)

    def finish(
        self,
        run_id: int,
        status: str = "completed",
        epoch: int | None = None,
        step: int | None = None,
        message: str | None = None,
        *,
        at: datetime | None = None,
        write_id: str | None = None,
    ) -> RunRecord:
        """End a run that stopped without crashing: completed, interrupted or diverged."""
        if status not in FINISH_STATUSES:
            raise FastposeError(f"finish status must be one of {', '.join(FINISH_STATUSES)}, got {status!r}")
        return self._end(run_id, status=status, epoch=epoch, step=step, error_message=message,
                         at=at, write_id=write_id, kind="finish")

    def crash(
        self,
        run_id: int,
        exc_type: str,
        message: str,
        traceback: str,
        epoch: int | None = None,
        step: int | None = None,
        *,
        at: datetime | None = None,
        write_id: str | None = None,
    ) -> RunRecord:
        """End a run with an exception: its type, message and full traceback are kept."""
        return self._end(
            run_id, status="crashed", epoch=epoch, step=step,
            error_type=exc_type, error_message=message, traceback=traceback,
            at=at, write_id=write_id, kind="crash",
        )

    def _end(
        self, run_id: int, *, status: str, epoch: int | None, step: int | None,
        at: datetime | None = None, write_id: str | None = None, kind: str = "finish", **fields: Any,
    ) -> RunRecord:
        now = at or _now()
        values = _with_position({"status": status, "ended_at": now, "heartbeat_at": now, **fields}, epoch, step)

        def work(conn: Connection) -> None:
            self._require(conn, run_id)
            conn.execute(sa.update(_runs).where(_runs.c.id == run_id).values(**values))

        self._write_once(kind, run_id, write_id, work)
        return self.get_run(run_id)

    def mark_lost(self, lost_after: float | None = None) -> list[RunRecord]:
        """Mark ``lost`` every running run whose process is gone or whose heartbeat is too old."""
        lost_after = lost_after_seconds(lost_after)
        marked = []
        for run, reason in self.lost_candidates(lost_after):
            def work(conn: Connection, run: RunRecord = run, reason: str = reason) -> int:
                return conn.execute(
                    sa.update(_runs)
                    .where(_runs.c.id == run.id, _runs.c.status == "running")  # it may have just finished
                    .values(status="lost", ended_at=run.heartbeat_at or run.started_at, error_message=reason)
                ).rowcount

            if self._write(work):
                marked.append(self.get_run(run.id))
        return marked

    # ----------------------------------------------------------------- notes
    def set_environment(
        self, run_id: int, environment: dict[str, Any], *, at: datetime | None = None, write_id: str | None = None
    ) -> None:
        """Replace the run's recorded environment (``start_run``'s) with ``environment``: what training found
        once its trainer existed (the device and precision Lightning chose, the backend flags it set)."""
        value = _environment_value(environment)

        def work(conn: Connection) -> None:
            self._require(conn, run_id)
            conn.execute(sa.update(_runs).where(_runs.c.id == run_id).values(environment=value))

        self._write_once("set_environment", run_id, write_id, work)

    def add_note(
        self, text: str, run_id: int | None = None, *, at: datetime | None = None, write_id: str | None = None
    ) -> NoteRecord | None:
        """A note on a run, or (``run_id=None``) on today. None only when ``write_id`` was already applied."""
        if not isinstance(text, str) or not text.strip():
            raise FastposeError("a note needs some text")
        text = text.strip()
        now = at or _now()

        def work(conn: Connection) -> int:
            if run_id is not None:
                self._require(conn, run_id)
            return conn.execute(
                sa.insert(_notes).values(run_id=run_id, text=text, created_at=now)
            ).inserted_primary_key[0]

        note_id = self._write_once("add_note", run_id, write_id, work)
        if note_id is ALREADY_APPLIED:
            return None
        return NoteRecord(id=note_id, text=text, created_at=now, run_id=run_id)

    def edit_note(self, note_id: int, text: str) -> NoteRecord:
        """Replace the text of note ``note_id`` (its time and run stay); UnknownNoteError if there is none."""
        if not isinstance(text, str) or not text.strip():
            raise FastposeError("a note needs some text")
        text = text.strip()

        def work(conn: Connection) -> Any:
            row = conn.execute(sa.select(_notes).where(_notes.c.id == note_id)).mappings().first()
            if row is None:
                raise UnknownRunError(f"no note with id {note_id}")
            conn.execute(sa.update(_notes).where(_notes.c.id == note_id).values(text=text))
            return row

        row = self._write(work)
        return NoteRecord(id=row["id"], text=text, created_at=row["created_at"], run_id=row["run_id"])

    def delete_note(self, note_id: int) -> None:
        """Delete note ``note_id``; UnknownRunError (a FastposeError) if there is none."""

        def work(conn: Connection) -> None:
            if conn.execute(sa.delete(_notes).where(_notes.c.id == note_id)).rowcount == 0:
                raise UnknownRunError(f"no note with id {note_id}")

        self._write(work)

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _require(conn: Connection, run_id: int) -> None:
        if conn.execute(sa.select(_runs.c.id).where(_runs.c.id == run_id)).first() is None:
            raise UnknownRunError(f"no run with id {run_id}")


def append_metrics(conn: Connection, run_id: int, rows: list[dict[str, Any]], now: datetime) -> None:
    """Insert metric ``rows`` (``metrics`` columns, NaN as None) of one run and bring its final/best
    summaries up to date, inside the caller's transaction (``log_metrics``, and runs copied whole)."""
    if not rows:
        return
    names = sorted({row["name"] for row in rows})
    conn.execute(sa.insert(_metrics), rows)
    existing = {
        r.name: dict(r._mapping)
        for r in conn.execute(sa.select(_summaries).where(_summaries.c.run_id == run_id, _summaries.c.name.in_(names)))
    }
    changed: dict[str, dict[str, Any]] = {}
    for row in rows:
        name, value = row["name"], row["value"]
        s = changed.get(name) or existing.get(name)
        if s is None:
            s = {"run_id": run_id, "name": name, "direction": direction(name), "count": 0,
                 "best": None, "best_epoch": None, "best_step": None}
        else:
            s = dict(s)
        if s["best"] is None or is_better(name, value, s["best"]):
            s.update(best=value, best_epoch=row["epoch"], best_step=row["step"])
        s.update(final=value, final_epoch=row["epoch"], final_step=row["step"], count=s["count"] + 1, updated_at=now)
        changed[name] = s
    for name, s in changed.items():
        if name in existing:
            sid = s.pop("id")
            conn.execute(sa.update(_summaries).where(_summaries.c.id == sid).values(**s))
        else:
            conn.execute(sa.insert(_summaries).values(**s))


def _insert_untracked(conn: Connection, run_id: int, tree: str, state: GitState | None) -> None:
    """The contents of a git state's small untracked files (``GitState.files``) into ``untracked_files``."""
    if state is None or not state.files:
        return
    conn.execute(sa.insert(_untracked), [
        {"run_id": run_id, "tree": tree, "path": clean_str(path), "size": len(data), "mode": int(mode), "content": data}
        for path, mode, data in state.files])


def _database_gone(exc: BaseException) -> bool:
    """The server says the journal's database does not exist: PostgreSQL's SQLSTATE 3D000, which psycopg
    leaves unset when the connection itself fails, so its (English) message counts too."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) == "3D000":
        return True
    text = str(orig or "")
    return 'FATAL:  database "' in text and '" does not exist' in text


def _open_quietly(path: Any) -> int | None:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError:
        return None


def _fd_id(fd: int | None) -> tuple[int, int] | None:
    if fd is None:
        return None
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _another(found: str | None, bound: str | None) -> str:
    return f"is now another journal ({found or 'without an identity'}; this run's is {bound})"


def _storable(value: Any) -> float | None:
    """A float for the database; NaN becomes NULL (SQLite cannot store NaN), read back as NaN."""
    value = float(value)
    return None if math.isnan(value) else value


def _username() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return None


def _with_position(values: dict[str, Any], epoch: int | None, step: int | None) -> dict[str, Any]:
    """``values`` plus the run's epoch/step where they are known (None leaves the stored value)."""
    if epoch is not None:
        values["epoch"] = epoch
    if step is not None:
        values["step"] = step
    return values
