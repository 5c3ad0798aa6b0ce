"""Journal outage spool: training goes on when the journal cannot be written, and nothing is lost or doubled.

``SpoolingJournal`` wraps a ``JournalStore`` for one run. Each write (heartbeat, log_metrics, finish, crash,
add_note, set_environment) gets a unique id and its time of call, and tries the journal; the id is recorded in the journal
(table ``applied_writes``) in the same transaction as the write. When the journal cannot be reached (SQLite
locked past the timeout, the PostgreSQL server down, connection refused) the write is appended as one JSON
line to ``<run_dir>/journal-spool.jsonl`` and the call returns; training carries on. Later writes keep the
order: while the spool is not empty they go to its end until a replay succeeds. ``flush()`` replays the spool
in order (at the latest at run end, in ``finish``/``crash``/``close``); ``fastpose journal`` replays the spools
it finds under ``<home>/runs`` (``replay_spools``). A replayed write whose id is already applied is skipped,
so each lands exactly once, even one that committed although its caller saw the connection drop.

A spool belongs to one journal. Every line carries the journal's UUID (``journal``, table
``journal_identity``) and its URL with the password removed (``journal_url``, for messages only). A replay
applies only the lines of the journal it is replaying into and leaves any other line in the spool, so a
spool written while a PostgreSQL journal was down is never replayed into the local SQLite journal of the same
home: ``fastpose journal`` says which spool waits for which journal instead. Lines without a journal id
(written before it existed, or by a run that never reached its journal) are applied only to the run they
name when that run's directory is the spool's own. Spools are found under ``<home>/runs`` without following
symbolic links.

The spool file is guarded by ``journal-spool.lock`` beside it (``filelock``), so a training process appending
and a ``fastpose journal`` replaying the same spool never interleave. A line the journal refuses for good
(its run no longer exists) moves to ``journal-spool.rejected.jsonl`` with the reason, never silently away.

A run's writer is bound to its journal (``JournalStore.open(journal_id=...)``): a journal file deleted, moved,
emptied or replaced by another journal while the run trains is a ``db.JournalChangedError`` on the next write,
which is spooled like an outage; the run's closing line (``unsaved_note``) and ``fastpose journal``
(``replay_spools``) say where the writes are and that they go in once that journal is back at its place.

A full disk: an append is all or nothing (a line cut short is cut off again). ``for_run`` sets aside
``journal-spool.reserve`` (1 MiB) in the run directory; the first append that finds the disk full deletes it
and tries again, so the writes of a run whose disk filled (its crash among them) still reach the spool. A
write neither the journal nor the spool can take is held in memory, in order, and tried again with the
next write and at the run's end; the closing line counts any that were never saved.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from fastpose.errors import FastposeError
from fastpose.journal.records import MetricPoint

SPOOL_NAME = "journal-spool.jsonl"
LOCK_NAME = "journal-spool.lock"
REJECTED_NAME = "journal-spool.rejected.jsonl"
RESERVE_NAME = "journal-spool.reserve"
RESERVE_BYTES = 1 << 20  # room for a run's last writes (a crash with its traceback, a few epochs) on a full disk
KINDS = ("heartbeat", "log_metrics", "finish", "crash", "add_note")


def is_outage(exc: BaseException) -> bool:
    """Is ``exc`` the journal being unreachable for now (worth spooling), rather than a bad write?"""
    import sqlalchemy as sa

    from fastpose.journal.db import JournalChangedError, JournalError

    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError,
                        sa.exc.TimeoutError)):
        return True
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, JournalChangedError):  # the run's journal is gone or replaced: keep its writes
        return True
    if isinstance(exc, JournalError) and "cannot open journal" in str(exc):  # server unreachable on (re)open
        return True
    return isinstance(exc, (ConnectionError, TimeoutError))


class SpoolingJournal:
    """The journal writes of one run, spooled to ``spool_path`` while the journal is unreachable.

    ``store``: an open ``JournalStore``, or a zero-argument callable returning one (opened on first use).
    ``retry_after_s``: after a failed write, later writes go straight to the spool for this long before the
    journal is tried again (so an outage costs training one timeout, not one per write).
    ``reserve_bytes``: set aside that much beside the spool (see the module docstring). ``end_warning``: say at
    ``finish``/``crash``/``close`` when writes remain spooled; a caller with its own closing line passes False
    and puts ``unsaved_note()`` in it.
    Reads (``get_run``, ``summaries``, ...) pass through to the store unchanged. Thread-safe (the heartbeat
    thread and the training loop share it).
    """

    def __init__(
        self,
        store: Any,
        spool_path: str | os.PathLike[str],
        *,
        retry_after_s: float = 30.0,
        warn: Callable[[str], None] | None = None,
        journal_id: str | None = None,
        journal_url: str | None = None,
        reserve_bytes: int = 0,
        end_warning: bool = True,
    ) -> None:
        self._store = store if not callable(store) or hasattr(store, "log_metrics") else None
        self._factory = None if self._store is not None else store
        # The journal this run writes to; spooled lines carry it (taken from the store when not given).
        self.journal_id = journal_id
        self.journal_url = journal_url
        self.spool_path = Path(spool_path)
        self.retry_after_s = retry_after_s
        self._warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        self._lock = threading.RLock()
        self._retry_at = 0.0  # monotonic time before which the journal is not tried again
        self._outage = False
        self.spooled = 0  # writes that went to the spool (a figure for tests and the run summary)
        self.replayed = 0
        self.problem: BaseException | None = None  # why the latest write did not reach the journal
        self._held: list[dict[str, Any]] = []  # writes neither the journal nor the spool file could take
        self._spool_error: OSError | None = None
        self.end_warning = end_warning
        self._reserve = self.spool_path.with_name(RESERVE_NAME) if reserve_bytes > 0 else None
        if self._reserve is not None and not _set_aside(self._reserve, reserve_bytes):
            self._reserve = None

    @classmethod
    def for_run(
        cls, run_dir: str | os.PathLike[str], url: str | None = None, *, busy_timeout_s: float = 5.0,
        write_attempts: int = 2, retry_after_s: float = 30.0, journal_id: str | None = None,
        end_warning: bool = True,
    ) -> SpoolingJournal:
        """What training uses: the journal at ``url`` (default: as configured) with short timeouts, so an
        outage blocks a training step for at most about ``busy_timeout_s * write_attempts`` once per
        ``retry_after_s``; spool at ``<run_dir>/journal-spool.jsonl``, with ``RESERVE_BYTES`` set aside beside it.
        With ``journal_id`` the writes go only to that journal (a bound store, see ``JournalStore.open``)."""
        from fastpose.journal.store import JournalStore

        def open_store() -> Any:
            return JournalStore.open(url, busy_timeout_s=busy_timeout_s, write_attempts=write_attempts,
                                     journal_id=journal_id)

        from fastpose.journal.db import journal_url, redact_url

        return cls(open_store, Path(run_dir) / SPOOL_NAME, retry_after_s=retry_after_s, journal_id=journal_id,
                   journal_url=redact_url(url or journal_url()), reserve_bytes=RESERVE_BYTES,
                   end_warning=end_warning)

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = self._factory()
        if self.journal_id is None:
            self.journal_id = self._store.journal_id()
            if self.journal_url is None and getattr(self._store, "url", None):
                from fastpose.journal.db import redact_url

                self.journal_url = redact_url(self._store.url)
        return self._store

    def __getattr__(self, name: str) -> Any:  # reads and anything else: the store's own
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.store, name)

    # ----------------------------------------------------------------- writes
    def heartbeat(self, run_id: int, epoch: int | None = None, step: int | None = None) -> None:
        self._submit("heartbeat", run_id, {"epoch": epoch, "step": step})

    def log_metrics(self, run_id: int, points: Any) -> None:
        now = _now()
        pts = [_point_json(p, now) for p in points]
        if pts:
            self._submit("log_metrics", run_id, {"points": pts}, at=now)

    def finish(self, run_id: int, status: str = "completed", epoch: int | None = None, step: int | None = None,
               message: str | None = None) -> Any:
        """End the run; replays the spool first. The RunRecord, or None while the journal is unreachable."""
        from fastpose.journal.store import FINISH_STATUSES

        if status not in FINISH_STATUSES:  # a bad call fails now, not at replay
            raise FastposeError(f"finish status must be one of {', '.join(FINISH_STATUSES)}, got {status!r}")
        return self._end("finish", run_id, {"status": status, "epoch": epoch, "step": step, "message": message})

    def crash(self, run_id: int, exc_type: str, message: str, traceback: str, epoch: int | None = None,
              step: int | None = None) -> Any:
        """Like ``finish`` for a crash: type, message and traceback are kept (spooled if need be)."""
        return self._end("crash", run_id, {"exc_type": exc_type, "message": message, "traceback": traceback,
                                           "epoch": epoch, "step": step})

    def set_environment(self, run_id: int, environment: dict[str, Any]) -> None:
        self._submit("set_environment", run_id, {"environment": environment})

    def add_note(self, text: str, run_id: int | None = None) -> Any:
        """The NoteRecord, or None while the journal is unreachable (the note is spooled)."""
        if not isinstance(text, str) or not text.strip():
            raise FastposeError("a note needs some text")
        return self._submit("add_note", run_id, {"text": text})

    def flush(self) -> bool:
        """Replay the spool now; True when it is empty afterwards (everything is in the journal)."""
        with self._lock:
            ok = self._replay()
            if not ok:
                self._retry_at = time.monotonic() + self.retry_after_s
            return ok

    def close(self) -> bool:
        """Flush and close the store; say so if writes remain spooled (unless ``end_warning`` is off)."""
        ok = self.flush()
        if self._store is not None and self._factory is not None:  # a store we opened ourselves
            self._store.close()
            self._store = None
        if self._reserve is not None:
            with contextlib.suppress(OSError):
                self._reserve.unlink()
            self._reserve = None
        if not ok and self.end_warning:
            self._warn(f"warning: {self.unsaved_note()}")
        return ok

    def unsaved_note(self) -> str | None:
        """One line on the writes that did not reach the journal: where they are and how they get in; None
        when every write is in the journal."""
        with self._lock:
            spooled = len(read_spool(self.spool_path)) if self.spool_path.exists() else 0
            held = len(self._held)
            if not spooled and not held:
                return None
            from fastpose.journal.db import JournalChangedError

            problem = self.problem
            if isinstance(problem, JournalChangedError):
                why = str(problem)
                how = ("put this run's journal back there (the file, or a copy of it) and run `fastpose journal`: "
                       "it replays them")
            else:
                why = "the journal is still unreachable" if problem is None or not _disk_full(problem) else (
                    "the journal's disk is full")
                how = "the next `fastpose journal` replays them"
            parts = [why]
            if spooled:
                parts.append(f"{spooled} journal writes of this run are kept in {self.spool_path}; {how}")
            if held:
                reason = self._spool_error.strerror if self._spool_error is not None else "no room"
                parts.append(f"{held} journal writes are lost ({self.spool_path} could not be written: {reason})")
            return "; ".join(parts)

    @property
    def needs_attention(self) -> bool:
        """Writes are lost, or wait for a journal that is gone or was replaced (they never go in by themselves)."""
        from fastpose.journal.db import JournalChangedError

        return bool(self._held) or (isinstance(self.problem, JournalChangedError) and self.spool_path.exists())

    # ----------------------------------------------------------------- machinery
    def _end(self, kind: str, run_id: int, args: dict[str, Any]) -> Any:
        with self._lock:
            self._retry_at = 0.0  # run end: try the journal whatever the back-off says
            self._ending = True
            try:
                result = self._submit(kind, run_id, args)
            finally:
                self._ending = False
            if result is None and self.end_warning:
                self._warn(f"warning: {self.unsaved_note()}")
            return result

    _ending = False  # finish/crash: the caller says how the run ended, no "reachable again" line before it
    _announced = False  # the current outage was announced (so its end is too)

    def _pending(self) -> bool:
        return bool(self._held) or self.spool_path.exists()

    def _submit(self, kind: str, run_id: int | None, args: dict[str, Any], at: datetime | None = None) -> Any:
        record = {"id": uuid.uuid4().hex, "kind": kind, "run_id": run_id,
                  "at": (at or _now()).isoformat(), "args": args,
                  "journal": self.journal_id, "journal_url": self.journal_url}
        with self._lock:
            if self._pending():  # keep the order: the spooled and held writes go in first
                if time.monotonic() < self._retry_at:
                    return self._spool(record, reason=None)
                if not self._replay():
                    self._retry_at = time.monotonic() + self.retry_after_s
                    return self._spool(record, reason=None)
            try:
                result = apply_write(self.store, record)
            except Exception as exc:  # noqa: BLE001 - sorted just below
                if not is_outage(exc):
                    raise
                return self._spool(record, reason=exc)
            self._outage = False
            self.problem = None
            return result

    def _spool(self, record: dict[str, Any], reason: BaseException | None) -> None:
        if reason is not None:
            self.problem = reason
            self._retry_at = time.monotonic() + self.retry_after_s
            if not self._outage:
                self._outage = True
                self._announced = self._warn_outage(reason)
        self._held.append(record)
        self._write_held()
        self.spooled += 1
        return None

    def _warn_outage(self, reason: BaseException) -> bool:
        """The first write of an outage says so, at once: training goes on meanwhile. A full disk is left to
        the closing line (it ends the run soon after, at the next checkpoint). True when it said so."""
        from fastpose.journal.db import JournalChangedError

        if isinstance(reason, JournalChangedError):
            self._warn(f"warning: {reason}; this run's journal writes go to {self.spool_path} until it is back; "
                       "training goes on")
            return True
        if _disk_full(reason):
            return False
        first = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
        self._warn(f"warning: journal unreachable ({type(reason).__name__}: {first[:200]}); "
                   f"writes go to {self.spool_path} and are replayed later; training goes on")
        return True

    def _write_held(self) -> bool:
        """Append the held writes to the spool file, oldest first; True when none is left in memory.

        The first append that finds the disk full frees the reserve, and the journal is tried again first:
        on the usual home the room freed is the SQLite journal's too."""
        while self._held:
            try:
                append_spool(self.spool_path, self._held[0])
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) and self._free_reserve():
                    if self._into_journal():
                        break
                    continue
                self._spool_error = exc
                return False
            self._held.pop(0)
        self._spool_error = None
        return True

    def _free_reserve(self) -> bool:
        """Delete the space set aside for a full disk (once): True when there was some."""
        reserve, self._reserve = self._reserve, None
        if reserve is None:
            return False
        try:
            reserve.unlink()
        except OSError:
            return False
        return True

    def _replay(self) -> bool:
        """Into the journal, in order: the spool file, then the writes held in memory. True when all are in."""
        self._write_held()
        return self._into_journal()

    def _into_journal(self) -> bool:
        try:
            if self.spool_path.exists():
                applied, _rejected, left = replay_spool(self.store, self.spool_path)
                self.replayed += applied
                if left:
                    return False
            else:
                applied = 0
            while self._held:  # the spool file could not take them: straight into the journal
                apply_write(self.store, self._held[0])  # exactly once: its id
                self._held.pop(0)
                applied += 1
                self.replayed += 1
        except Exception as exc:  # noqa: BLE001
            if not is_outage(exc):
                raise
            self.problem = exc
            return False
        self.problem = None
        if applied and not self._ending and self._announced:
            self._warn(f"journal reachable again: {applied} spooled writes replayed from {self.spool_path}")
        return True


# ----------------------------------------------------------------------------- spool files


def apply_write(store: Any, record: dict[str, Any]) -> Any:
    """Apply one spool record through ``store`` (exactly once: its id is recorded with it)."""
    kind, run_id, args = record["kind"], record.get("run_id"), dict(record.get("args") or {})
    at = datetime.fromisoformat(record["at"])
    wid = record["id"]
    if kind == "heartbeat":
        return store.heartbeat(run_id, args.get("epoch"), args.get("step"), at=at, write_id=wid)
    if kind == "log_metrics":
        points = [MetricPoint(p[0], float("nan") if p[1] is None else float(p[1]), p[2], p[3],
                              datetime.fromisoformat(p[4])) for p in args["points"]]
        return store.log_metrics(run_id, points, at=at, write_id=wid)
    if kind == "finish":
        return store.finish(run_id, args.get("status", "completed"), args.get("epoch"), args.get("step"),
                            args.get("message"), at=at, write_id=wid)
    if kind == "crash":
        return store.crash(run_id, args["exc_type"], args["message"], args["traceback"], args.get("epoch"),
                           args.get("step"), at=at, write_id=wid)
    if kind == "add_note":
        return store.add_note(args["text"], run_id, at=at, write_id=wid)
    if kind == "set_environment":
        return store.set_environment(run_id, args["environment"], at=at, write_id=wid)
    raise FastposeError(f"unknown spooled journal write {kind!r}")


def _locked(spool_path: Path):  # noqa: ANN202 - a context manager
    from fastpose.journal.db import file_lock

    return file_lock(spool_path.with_name(LOCK_NAME))


def _dumps(record: dict[str, Any]) -> str:
    """Strict JSON (no NaN/Infinity tokens: non-finite metric values are written as null)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def append_spool(spool_path: Path, record: dict[str, Any]) -> None:
    """Append one record as a JSON line, on disk (fsync) before returning; all or nothing: a line a full
    disk cuts short is cut off again (the error is raised), so the next append starts on a line of its own."""
    with _locked(spool_path):
        append_line(spool_path, _dumps(record))


def read_spool(spool_path: Path) -> list[dict[str, Any]]:
    """The records of a spool, in order. A torn last line (the writer died mid-append) is left out."""
    try:
        data = spool_path.read_bytes()
    except FileNotFoundError:
        return []
    records = []
    lines = data.split(b"\n")
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            records.append(json.loads(raw))
        except ValueError:
            if i == len(lines) - 1:  # no newline after it: an append cut short
                continue
            raise FastposeError(f"{spool_path} line {i + 1} is not a journal write; move the file away") from None
    return records


def belongs_here(store: Any, record: dict[str, Any], spool_path: Path, journal_id: str | None,
                 cache: dict[Any, bool]) -> bool:
    """Is ``record`` a write for the journal of ``store`` (whose id is ``journal_id``)?

    A record with a journal id: that id must be this journal's. Without one (older spools): the run it names
    must exist here and have the spool's directory as its run directory (or none recorded).
    """
    owner = record.get("journal")
    if owner is not None:
        return owner == journal_id
    run_id = record.get("run_id")
    if run_id is None:
        return True  # a day note: no run to clobber
    if run_id not in cache:
        try:
            run = store.get_run(run_id)
        except FastposeError:
            cache[run_id] = False
        else:
            cache[run_id] = run.run_dir is None or os.path.realpath(run.run_dir) == os.path.realpath(spool_path.parent)
    return cache[run_id]


def waiting_for(records: list[dict[str, Any]]) -> str:
    """The journal(s) the records of a spool wait for, for a message: ``<uuid> (<url>)``."""
    owners = {}
    for r in records:
        owners.setdefault(r.get("journal"), r.get("journal_url"))
    return ", ".join(f"journal {jid or '(unknown)'}" + (f" ({url})" if url else "") for jid, url in owners.items())


def replay_spool(store: Any, spool_path: Path) -> tuple[int, int, int]:
    """Replay ``spool_path`` into ``store`` in order: ``(applied, rejected, left)``.

    Only the lines that belong to this journal (``belongs_here``) are applied; the others stay in the spool
    and count in ``left``. Stops at the first outage and keeps the unapplied rest (``left`` > 0); removes the
    file only when every line is in. Writes already applied (same id) count as applied and are not written
    again. Where the spool cannot be rewritten (a full disk) it is left whole: the lines already applied are
    skipped by their ids next time.
    """
    with _locked(spool_path):
        records = read_spool(spool_path)
        if not records:
            spool_path.unlink(missing_ok=True)
            return 0, 0, 0
        journal_id = store.journal_id()
        cache: dict[Any, bool] = {}
        foreign = [r for r in records if not belongs_here(store, r, spool_path, journal_id, cache)]
        if foreign:
            records = [r for r in records if r not in foreign]
        applied = rejected = 0
        for i, record in enumerate(records):
            try:
                apply_write(store, record)
            except Exception as exc:  # noqa: BLE001 - outage: keep the rest; refused for good: set aside
                if is_outage(exc):
                    _rewrite(spool_path, foreign + records[i:])
                    return applied, rejected, len(foreign) + len(records) - i
                # The journal refuses this write for good (its run is gone, a constraint): keep it beside the
                # spool with the reason rather than blocking every later write behind it.
                try:
                    append_line(spool_path.with_name(REJECTED_NAME),
                                _dumps({**record, "rejected": f"{type(exc).__name__}: {exc}"}))
                except OSError:  # nowhere to set it aside: it stays in the spool
                    _rewrite(spool_path, foreign + records[i:])
                    return applied, rejected, len(foreign) + len(records) - i
                rejected += 1
                continue
            applied += 1
        if foreign:
            _rewrite(spool_path, foreign)
            return applied, rejected, len(foreign)
        spool_path.unlink()
        return applied, rejected, 0


def _rewrite(spool_path: Path, records: list[dict[str, Any]]) -> None:
    """Replace the spool by ``records`` atomically (under the lock); where it cannot be written, the spool
    stays as it was (a superset: its applied lines are skipped by their ids)."""
    tmp = spool_path.with_name(spool_path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(_dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, spool_path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def append_line(path: Path, line: str) -> None:
    """Append ``line`` and a newline to ``path``, all or nothing (a line a full disk cuts short is cut off)."""
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def find_spools(home: Path) -> list[Path]:
    """Spool files of the runs under ``home/runs`` (run directories are ``runs/<YY-MM-DD>/<HH-MM-...>``).

    Never follows a symbolic link (a linked day or run directory, or a linked spool file, is skipped), so
    a replay only ever touches files inside ``<home>/runs``. Unreadable directories are skipped.
    """
    runs = home / "runs"
    try:
        if runs.is_symlink() or not runs.is_dir():
            return []
    except OSError:
        return []
    found = []

    def scan(directory: Path, depth: int) -> None:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return
        for entry in entries:
            try:
                if entry.name == SPOOL_NAME and depth > 0 and entry.is_file(follow_symlinks=False):
                    found.append(Path(entry.path))
                elif depth < 2 and entry.is_dir(follow_symlinks=False):
                    scan(Path(entry.path), depth + 1)
            except OSError:
                continue

    scan(runs, 0)
    return sorted(found)


def waiting_line(path: Path, records: list[dict[str, Any]], here: str) -> str:
    """One line for a spool whose writes wait for another journal than ``here`` describes."""
    runs = sorted({r["run_id"] for r in records if isinstance(r.get("run_id"), int)})
    whose = f" of run {', '.join(map(str, runs))}" if runs else ""
    return (f"spool {path} waits for {waiting_for(records)}: {len(records)} writes{whose}; {here}; put that "
            "journal back (the file, or a copy of it) or point $FASTPOSE_JOURNAL_URL at it, and `fastpose journal` "
            "replays them")


def report_waiting(home: Path, url: str, warn: Callable[[str], None]) -> None:
    """No journal at ``url``: one line per spool under ``home`` on where its writes wait (nothing is created)."""
    from fastpose.journal.db import where_journal

    for path in find_spools(home):
        try:
            records = read_spool(path)
        except FastposeError as exc:
            warn(f"warning: {exc}")
            continue
        if records:
            warn(waiting_line(path, records, f"there is no journal at {where_journal(url)} now"))


def replay_spools(home: Path, open_store: Callable[[], Any], warn: Callable[[str], None]) -> int:
    """Replay every spool under ``home``: the number of writes applied. An outage leaves them for later;
    a spool written for another journal is left where it is, with one line saying which it waits for."""
    from fastpose.journal.db import redact_url

    spools = find_spools(home)
    if not spools:
        return 0
    total = 0
    try:
        store = open_store()
    except Exception as exc:  # noqa: BLE001
        if not is_outage(exc):
            raise
        warn(f"warning: journal unreachable; {len(spools)} run spool(s) wait in the run directories "
             f"({spools[0]}{' ...' if len(spools) > 1 else ''}): the first `fastpose journal` that reaches the "
             "journal replays them")
        return 0
    try:
        this = store.journal_id()
        for path in spools:
            try:
                applied, rejected, left = replay_spool(store, path)
            except FastposeError as exc:  # an unreadable spool: say so, list the journal anyway
                warn(f"warning: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001
                if not is_outage(exc):
                    raise
                applied, rejected, left = 0, 0, -1
            total += applied
            if applied or rejected:
                warn(f"replayed {applied} journal writes from {path}"
                     + (f"; {rejected} refused, kept in {path.with_name(REJECTED_NAME)}" if rejected else ""))
            if left > 0:
                waiting = [r for r in read_spool(path) if r.get("journal") != this]
                if waiting:
                    warn(waiting_line(path, waiting, f"this is journal {this} ({redact_url(store.url)})"))
                    continue
            if left:
                warn(f"warning: journal unreachable; {path} not fully replayed yet")
                break
    finally:
        store.close()
    return total


# ----------------------------------------------------------------------------- helpers


def _set_aside(path: Path, size: int) -> bool:
    """Create ``path`` with ``size`` bytes allocated on disk (best effort: False when it cannot)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError:
        return False
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except (AttributeError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            os.write(fd, bytes(size))  # no fallocate here: blocks written are blocks allocated
        return True
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return False
    finally:
        os.close(fd)


def _disk_full(exc: BaseException) -> bool:
    """A write that failed because a disk is full: an OSError's errno, or SQLite saying so."""
    from fastpose.errors import disk_full

    return disk_full(exc) is not None or "disk is full" in str(exc).lower()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _point_json(p: Any, now: datetime) -> list[Any]:
    if not isinstance(p, MetricPoint):
        p = MetricPoint(*p) if isinstance(p, (tuple, list)) else p
    if not isinstance(p.name, str) or not p.name or len(p.name) > 200:
        raise FastposeError(f"invalid metric name {p.name!r}")
    value: float | None = float(p.value)
    if not math.isfinite(value):
        value = None  # strict JSON; the journal stores a non-finite value as NULL (NaN) either way
    return [p.name, value, p.epoch, p.step, (p.time or now).isoformat()]


__all__ = [
    "SpoolingJournal", "apply_write", "append_spool", "find_spools", "is_outage", "read_spool",
    "replay_spool", "replay_spools", "report_waiting", "waiting_line", "SPOOL_NAME",
]
