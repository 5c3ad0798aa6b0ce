"""Read queries over the journal, written once as SQL and run by two executors.

``JournalReader`` holds every read (listing, references, summaries, notes, history, lost detection) as
plain SQL with ``:named`` parameters. ``JournalStore`` (store.py) runs them through SQLAlchemy, on any
database; ``SqliteReader`` runs them through the stdlib ``sqlite3``, so ``fastpose journal`` on an
up-to-date SQLite journal never pays SQLAlchemy's import time. Both return the same records.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fastpose.errors import FastposeError
from fastpose.journal import db
from fastpose.journal.records import (
    RUN_COLUMNS,
    GitState,
    MetricPoint,
    MetricSummary,
    NoteRecord,
    RunRecord,
    SourceState,
    git_from_row,
    source_from_row,
    run_from_row,
    sqlite_time,
    to_utc,
)

STATUSES = ("running", "completed", "crashed", "interrupted", "diverged", "lost")
DEFAULT_LOST_AFTER_S = 120.0

_RUN_SELECT = (
    "SELECT "
    + ", ".join(f"r.{c}" for c in RUN_COLUMNS)
    + ", g.commit_sha AS git_commit, g.dirty AS git_dirty FROM runs r LEFT JOIN git_states g ON g.run_id = r.id"
)


class UnknownRunError(FastposeError):
    """A run reference matched no run, or several."""


class DeletedRunError(UnknownRunError):
    """A run reference names a run that ``journal rm`` deleted (hidden until ``journal restore``)."""


# Runs deleted by `journal rm` (runs.deleted_at, revision 0009) are hidden from every read that lists or
# resolves runs: this is the one place that says how (JournalReader._runs, resolve, and the sweep reads).
DELETED_CHOICES = ("hide", "only", "all")


def deleted_clause(deleted: str, alias: str = "r.") -> str:
    """The SQL condition on ``<alias>deleted_at`` for ``deleted`` (``DELETED_CHOICES``); "" for ``all``."""
    if deleted not in DELETED_CHOICES:
        raise ValueError(f"deleted must be one of {DELETED_CHOICES}, got {deleted!r}")
    return {"hide": f"{alias}deleted_at IS NULL", "only": f"{alias}deleted_at IS NOT NULL", "all": ""}[deleted]


class JournalReader:
    """Read access to a journal. Subclasses provide ``_fetch`` (and ``mark_lost``'s write)."""

    url: str
    _is_sqlite: bool = True

    # ----------------------------------------------------------------- executor
    def _fetch(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _p(self, value: Any) -> Any:
        """A Python value as a bound parameter in raw SQL (SQLite compares times as text)."""
        if isinstance(value, datetime) and self._is_sqlite:
            return sqlite_time(value)
        return value

    def _runs(self, where: str = "", params: dict[str, Any] | None = None, tail: str = "", *,
              deleted: str = "hide") -> list[RunRecord]:
        """Runs matching ``where`` (SQL over ``r``, the runs table). ``deleted`` (``DELETED_CHOICES``): runs
        that ``journal rm`` deleted are hidden (``hide``, every listing's default), the only ones (``only``:
        ``journal --deleted``, ``restore``, ``gc``) or counted like any other (``all``)."""
        clauses = [c for c in (where, deleted_clause(deleted)) if c]
        sql = _RUN_SELECT + (f" WHERE {' AND '.join(f'({c})' for c in clauses)}" if clauses else "") + " " + tail
        return [run_from_row(row) for row in self._fetch(sql, params)]

    # ----------------------------------------------------------------- runs
    def get_run(self, run_id: int) -> RunRecord:
        """The run with this id, deleted or not (``RunRecord.deleted_at`` says): ids come from the journal
        itself (a parent, a sweep cell, a write just made), never from a person; ``resolve`` reads those."""
        if not isinstance(run_id, int) or not 0 <= run_id < 2**63:
            raise UnknownRunError(f"no run with id {run_id!r}")
        runs = self._runs("r.id = :id", {"id": int(run_id)}, deleted="all")
        if not runs:
            raise UnknownRunError(f"no run with id {run_id}")
        return runs[0]

    def list_runs(
        self,
        since: datetime | None = None,
        status: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        *,
        deleted: str = "hide",
    ) -> list[RunRecord]:
        """Runs newest first, filtered; ``limit`` keeps the newest K; ``deleted`` as in ``_runs``."""
        where, params = [], {}
        if since is not None:
            where.append("r.started_at >= :since")
            params["since"] = self._p(since)
        if status is not None:
            where.append("r.status = :status")
            params["status"] = status
        if name is not None:
            where.append("r.name = :name")
            params["name"] = name
        tail = "ORDER BY r.started_at DESC, r.id DESC"
        if limit is not None:
            tail += " LIMIT :limit"
            params["limit"] = int(limit)
        return self._runs(" AND ".join(where), params, tail, deleted=deleted)

    def resolve(self, ref: str, *, deleted: str = "hide") -> RunRecord:
        """A run from a reference: numeric id | full label | NAME (newest) | unique label prefix.

        Runs deleted by ``journal rm`` are not found (``deleted="only"`` finds those alone); a reference
        that names one says so, and how to bring it back.
        """
        try:
            return self._resolve(ref, deleted)
        except UnknownRunError:
            if deleted != "hide":
                raise
            try:
                gone = self._resolve(ref, "only")
            except UnknownRunError:
                gone = None
            if gone is not None:
                raise DeletedRunError(
                    f"run #{gone.id} {gone.label} is deleted (journal rm); `fastpose journal restore {gone.id}` "
                    "brings it back") from None
            raise

    def _resolve(self, ref: str, deleted: str) -> RunRecord:
        ref = str(ref).strip()
        if not ref:
            raise UnknownRunError("empty run reference; give an id, a label, a label prefix or a NAME")
        kept = deleted_clause(deleted, "")
        kept_and = f" AND {kept}" if kept else ""
        if ref.isascii() and ref.isdigit() and len(ref) <= 18:  # "٣" is not run 3; ids fit in 64 bits
            runs = self._runs("r.id = :id", {"id": int(ref)}, deleted=deleted)
            if runs:
                return runs[0]
        newest = "ORDER BY r.started_at DESC, r.id DESC LIMIT 1"
        for column in ("label", "name"):
            runs = self._runs(f"r.{column} = :ref", {"ref": ref}, newest, deleted=deleted)
            if runs:
                return runs[0]
        labels = [
            row["label"]
            for row in self._fetch(
                f"SELECT DISTINCT label FROM runs WHERE substr(label, 1, :n) = :ref{kept_and} ORDER BY label LIMIT 6",
                {"n": len(ref), "ref": ref},
            )
        ]
        if len(labels) == 1:
            return self._runs("r.label = :ref", {"ref": labels[0]}, newest, deleted=deleted)[0]
        if labels:
            shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
            raise UnknownRunError(f"run reference {ref!r} is ambiguous; it starts: {shown}")
        where = f" WHERE {kept}" if kept else ""
        candidates = [
            row["v"]
            for row in self._fetch(
                f"SELECT DISTINCT name AS v FROM runs{where} UNION "
                f"SELECT v FROM (SELECT label AS v FROM runs{where} ORDER BY id DESC LIMIT 2000) recent"
            )
        ]
        import difflib

        close = difflib.get_close_matches(ref, candidates, n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ("" if candidates else "; the journal has no runs")
        raise UnknownRunError(f"no run matches {ref!r}{hint}")

    def reproductions(self, run_id: int) -> list[RunRecord]:
        """The runs ``fastpose reproduce`` made of run ``run_id`` (``runs.reproduces_id``), oldest first."""
        return self._runs("r.reproduces_id = :id", {"id": int(run_id)}, "ORDER BY r.id")

    def running_runs(self) -> list[RunRecord]:
        """Every run with status running, deleted ones too (a deleted run whose process came back is running)."""
        return self._runs("r.status = 'running'", {}, "ORDER BY r.id", deleted="all")

    def lost_candidates(self, lost_after: float | None = None) -> list[tuple[RunRecord, str]]:
        """Running runs whose process is gone (same host) or whose heartbeat is too old (any host)."""
        limit = lost_after_seconds(lost_after)
        now = datetime.now(timezone.utc)
        host = socket.gethostname()
        out = []
        for run in self.running_runs():
            reason = lost_reason(run, now=now, lost_after=limit, host=host)
            if reason:
                out.append((run, reason))
        return out

    def mark_lost(self, lost_after: float | None = None) -> list[RunRecord]:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (the reader must not be used afterwards)."""

    # ----------------------------------------------------------------- details
    def git_state(self, run_id: int) -> GitState | None:
        rows = self._fetch("SELECT * FROM git_states WHERE run_id = :id", {"id": int(run_id)})
        return git_from_row(rows[0]) if rows else None

    def source_state(self, run_id: int) -> SourceState | None:
        """The fastpose code the run ran (revision 0007); None for runs journaled before it."""
        rows = self._fetch("SELECT * FROM source_states WHERE run_id = :id", {"id": int(run_id)})
        return source_from_row(rows[0]) if rows else None

    def untracked_files(self, run_id: int, tree: str = "cwd") -> list[tuple[str, int, bytes]]:
        """``(path, permission bits, bytes)`` of the untracked files whose contents the run kept (revision
        0010; ``tree``: ``cwd`` or ``source``), by path."""
        rows = self._fetch("SELECT path, mode, content FROM untracked_files WHERE run_id = :id AND tree = :tree "
                           "ORDER BY path", {"id": int(run_id), "tree": tree})
        return [(r["path"], int(r["mode"]), bytes(r["content"])) for r in rows]

    def metric_history(self, run_id: int, name: str | None = None) -> list[MetricPoint]:
        """Every logged value of the run (one metric if ``name``), in logging order."""
        sql = "SELECT name, value, epoch, step, logged_at FROM metrics WHERE run_id = :id"
        params: dict[str, Any] = {"id": int(run_id)}
        if name is not None:
            sql += " AND name = :name"
            params["name"] = name
        return [
            MetricPoint(
                name=row["name"],
                value=float("nan") if row["value"] is None else row["value"],
                epoch=row["epoch"],
                step=row["step"],
                time=to_utc(row["logged_at"]),
            )
            for row in self._fetch(sql + " ORDER BY id", params)
        ]

    def metric_summaries(self, run_ids: list[int]) -> dict[int, dict[str, MetricSummary]]:
        """``{run_id: {name: MetricSummary}}`` from the summaries table (no history scan)."""
        out: dict[int, dict[str, MetricSummary]] = {int(i): {} for i in run_ids}
        for chunk in _chunks(list(out), 500):
            marks, params = _in_params(chunk)
            rows = self._fetch(
                "SELECT run_id, name, direction, final, best, best_epoch, best_step, count "
                f"FROM metric_summaries WHERE run_id IN ({marks}) ORDER BY run_id, name",
                params,
            )
            for row in rows:
                out[row["run_id"]][row["name"]] = MetricSummary(
                    name=row["name"],
                    direction=row["direction"],
                    final=_num(row["final"]),
                    best=_num(row["best"]),
                    best_epoch=row["best_epoch"],
                    best_step=row["best_step"],
                    count=row["count"],
                )
        return out

    def summaries(self, run_id: int) -> dict[str, tuple[float, float]]:
        """``{name: (final, best)}`` for one run."""
        return {n: (s.final, s.best) for n, s in self.metric_summaries([run_id])[int(run_id)].items()}

    def run_notes(self, run_ids: list[int]) -> dict[int, list[NoteRecord]]:
        out: dict[int, list[NoteRecord]] = {int(i): [] for i in run_ids}
        for chunk in _chunks(list(out), 500):
            marks, params = _in_params(chunk)
            for note in self._notes(f"run_id IN ({marks})", params):
                out[note.run_id].append(note)  # type: ignore[index]
        return out

    def notes(self, run_id: int | None = None) -> list[NoteRecord]:
        """The notes of one run, oldest first."""
        return self._notes("run_id = :id", {"id": int(run_id)}) if run_id is not None else self.day_notes()

    def day_notes(self, since: datetime | None = None, until: datetime | None = None) -> list[NoteRecord]:
        """Notes written about a day rather than a run, oldest first."""
        where, params = ["run_id IS NULL"], {}
        if since is not None:
            where.append("created_at >= :since")
            params["since"] = self._p(since)
        if until is not None:
            where.append("created_at <= :until")
            params["until"] = self._p(until)
        return self._notes(" AND ".join(where), params)

    def _notes(self, where: str, params: dict[str, Any]) -> list[NoteRecord]:
        rows = self._fetch(f"SELECT id, run_id, text, created_at FROM notes WHERE {where} ORDER BY created_at, id", params)
        return [NoteRecord(r["id"], r["text"], to_utc(r["created_at"]), r["run_id"]) for r in rows]

    def journal_id(self) -> str | None:
        """This journal's UUID (revision 0004; written when the journal was created or upgraded)."""
        rows = self._fetch("SELECT journal_id FROM journal_identity WHERE id = 1")
        return rows[0]["journal_id"] if rows else None

    def counts(self) -> dict[str, int]:
        """Rows per table (tests and ``journal show`` footers): every table of ``models`` (a test checks)."""
        tables = COUNTED_TABLES
        return {t: self._fetch(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"] for t in tables}


COUNTED_TABLES = ("runs", "git_states", "metrics", "metric_summaries", "notes", "applied_writes", "journal_identity",
                  "sweeps", "sweep_runs", "run_tags", "evaluations", "source_states", "sweep_claims", "gc_removals",
                  "untracked_files")


class SqliteReader(JournalReader):
    """``JournalReader`` on the stdlib ``sqlite3``: only for a journal already at HEAD_REVISION."""

    def __init__(self, path: Path, url: str, *, readonly: bool = False) -> None:
        self.path = path
        self.url = url
        self.readonly = readonly
        try:
            self._conn = db.connect_sqlite(path, readonly=readonly)
            self._conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            if readonly:
                raise
            # A full disk cannot take the WAL index SQLite creates on open: read the journal as it is.
            self.readonly = True
            self._conn = db.connect_sqlite(path, readonly=True)

    def _fetch(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            cur = self._conn.execute(sql, params or {})
            rows = cur.fetchall()
        except Exception as exc:
            if db.is_corruption(exc):
                raise db.damaged_journal(self.path, db._first_line(exc)) from None
            raise
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in rows]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SqliteReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- process liveness


def lost_after_seconds(value: float | None = None) -> float:
    """The heartbeat age after which a running run is lost: argument, else $FASTPOSE_LOST_AFTER, else 120."""
    if value is not None:
        return float(value)
    from fastpose.environment import positive_seconds

    return positive_seconds("FASTPOSE_LOST_AFTER", DEFAULT_LOST_AFTER_S)


# runs.proc_start holds when the run's process started, in milliseconds since the epoch (psutil). Runs
# recorded before held Linux clock ticks after boot (/proc/<pid>/stat field 22): always below this bound
# (31 years of uptime at 100 Hz), while any time in milliseconds since 2001 is above it.
LEGACY_TICKS_BELOW = 10**11
# How far two readings of one process's start may differ: psutil derives it from the boot time, which the
# kernel gives in whole seconds and which moves when the clock is adjusted. A pid reused within a second
# of the run's start is not told apart.
START_TOLERANCE_MS = 1500


def process_started_ms(pid: int) -> int | None:
    """When live process ``pid`` started, in milliseconds since the epoch (psutil, on any OS it supports);
    None if there is no such process or it is a zombie; 0 if it exists but its start cannot be read."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None
        return int(proc.create_time() * 1000)
    except psutil.NoSuchProcess:
        return None
    except (psutil.AccessDenied, OSError):
        return 0


def same_start(recorded: int, started_ms: int) -> bool:
    """Is ``started_ms`` (``process_started_ms``) the start ``recorded`` in ``runs.proc_start``, in either
    unit (see ``LEGACY_TICKS_BELOW``)?"""
    if recorded < LEGACY_TICKS_BELOW:
        import psutil

        recorded = int((psutil.boot_time() + recorded / os.sysconf("SC_CLK_TCK")) * 1000)
    return abs(recorded - started_ms) <= START_TOLERANCE_MS


def machine_id() -> str | None:
    """This machine: ``/etc/machine-id`` (systemd, D-Bus), else ``boot:<kernel boot id>``; None if neither.

    Hostnames are no identity: containers with host networking and lab machines cloned from one image share
    them. A container without its own machine-id shares the host's boot id, and the PID namespace tells it
    apart (``pid_namespace``).
    """
    for path, prefix in (("/etc/machine-id", ""), ("/var/lib/dbus/machine-id", ""),
                         ("/proc/sys/kernel/random/boot_id", "boot:")):
        try:
            value = Path(path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if value and len(value) <= 58:
            return prefix + value
    return None


def pid_namespace() -> int | None:
    """The inode of this process's PID namespace (``/proc/self/ns/pid``); None where there is none."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def same_process_table(run: RunRecord, host: str) -> bool:
    """Can this process look the run's pid up in its own process table?

    Only when the run was recorded on this machine (machine id) and in this PID namespace. Runs recorded
    before revision 0004 have neither, and fall back to the hostname.
    """
    if run.machine_id is None and run.pid_namespace is None:
        return run.host == host
    return run.machine_id == machine_id() and run.pid_namespace == pid_namespace()


def lost_reason(run: RunRecord, *, now: datetime, lost_after: float, host: str) -> str | None:
    """Why a running run counts as lost, or None if it may still be alive.

    In the run's own process table (same machine and PID namespace, ``same_process_table``) the process
    decides: the pid is gone, or now belongs to a process started at another time. A live process is never
    marked lost, however long its epoch runs between heartbeats. Anywhere else (another machine, a container
    or PID namespace with the same hostname, or no pid) only the heartbeat can tell: older than
    ``lost_after`` seconds is lost.
    """
    if run.pid and same_process_table(run, host):
        started = process_started_ms(run.pid)
        if started is None:
            return f"process {run.pid} on {host} is gone"
        if run.proc_start and started and not same_start(run.proc_start, started):
            return f"process {run.pid} on {host} is gone (its pid now belongs to another process)"
        return None
    last = run.heartbeat_at or run.started_at
    age = (now - last).total_seconds()
    if age > lost_after:
        return f"no heartbeat for {age:.0f} s (limit {lost_after:.0f} s)"
    return None


# ----------------------------------------------------------------------------- helpers


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _in_params(values: list[int]) -> tuple[str, dict[str, int]]:
    params = {f"p{i}": int(v) for i, v in enumerate(values)}
    return ", ".join(f":{k}" for k in params), params


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``YYYY-MM-DD`` (local midnight) or ``Nd`` (N days back from local midnight today, 0d = today)."""
    now = now or datetime.now().astimezone()
    text = text.strip()
    try:
        if text.endswith("d") and text[:-1].isascii() and text[:-1].isdigit():
            if len(text) > 7:  # more than 999,999 days: before year 1
                raise OverflowError
            day = now.date() - timedelta(days=int(text[:-1]))
        else:
            day = datetime.strptime(text, "%Y-%m-%d").date()
        local = datetime(day.year, day.month, day.day).astimezone()
        return local.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise FastposeError(f"--since {text!r}: use YYYY-MM-DD or Nd (e.g. 7d) for a day after the year 1") from None
