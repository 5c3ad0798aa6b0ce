"""Where the journal lives, how to connect, and migrate-on-open.

- Home: ``$FASTPOSE_HOME``; else the nearest ``journal/`` holding ``fastpose.db`` in the working directory
  or a directory above it (found as git finds ``.git``); else ``./journal`` (where a first run creates it).
  URL: ``$FASTPOSE_JOURNAL_URL`` else SQLite at ``<home>/fastpose.db``. A setting in the environment wins
  over the search, as ``GIT_DIR`` does for git. ``missing_journal()`` says where a command looked.
- SQLite connections get WAL, ``foreign_keys=ON`` and a busy timeout; write transactions use
  ``BEGIN IMMEDIATE`` so concurrent writers wait on the lock instead of failing mid-transaction.
- Opening checks the schema revision with one plain SQL query; only when the journal is missing, older
  or newer than the code is Alembic imported. An older SQLite journal is copied to
  ``fastpose.db.bak-<timestamp>`` and upgraded under an inter-process lock (``filelock`` on
  ``fastpose.db.lock``; ``pg_advisory_lock`` on PostgreSQL). A newer one is refused and left untouched.

SQLAlchemy and Alembic are imported inside the functions that need them: ``fastpose journal`` on an
up-to-date SQLite journal reads it through ``sqlite3`` alone (see ``fastpose.journal.reader``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from collections import Counter
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Iterator
from urllib.parse import unquote, urlsplit

from fastpose.errors import FastposeError
from fastpose.text import strict_json

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

# The newest revision in migrations/versions; a test checks it is Alembic's single head.
HEAD_REVISION = "0010"
BUSY_TIMEOUT_MS = 10_000
_SQLITE_MAGIC = b"SQLite format 3\x00"
_PG_LOCK_KEY = 0x6661_7374_706F  # "fastpo": one advisory lock id for fastpose migrations


class JournalError(FastposeError):
    """The journal cannot be opened as asked (not a database, newer schema, bad URL)."""


class JournalChangedError(JournalError):
    """The journal a store was bound to is no longer there: its file was deleted, moved or emptied, or the URL
    now leads to another journal (another identity). A run's writes then go to its spool (``is_outage``)."""

    def __init__(self, url: str, why: str, *, replaced: bool = False) -> None:
        self.url, self.why, self.replaced = url, why, replaced
        super().__init__(f"the journal {where_journal(url)} {why}")


def where_journal(url: str) -> str:
    """The journal's file for SQLite, its URL without the password for servers: for messages."""
    path = sqlite_path(url) if url.startswith("sqlite") else None
    return str(path) if path is not None else redact_url(url)


JOURNAL_DIR = "journal"  # the home's name where no $FASTPOSE_HOME says otherwise
JOURNAL_FILE = "fastpose.db"


def journal_home() -> Path:
    """``$FASTPOSE_HOME``; else the nearest ``journal/`` with a ``fastpose.db`` from the working directory up
    (``find_home``); else ``./journal``."""
    env = os.environ.get("FASTPOSE_HOME")
    if env:
        return Path(env)
    return find_home() or Path(JOURNAL_DIR)


def find_home(start: Path | None = None) -> Path | None:
    """The nearest ``<dir>/journal`` holding a ``fastpose.db`` file, ``dir`` being ``start`` (default: the
    working directory) or one of its parents; None when there is none (or the working directory is gone)."""
    try:
        here = (start or Path.cwd()).absolute()
    except OSError:
        return None
    for folder in (here, *here.parents):
        candidate = folder / JOURNAL_DIR
        try:
            if (candidate / JOURNAL_FILE).is_file():
                return candidate
        except OSError:  # a directory on the way that cannot be read: the search goes on above it
            continue
    return None


def missing_journal() -> str:
    """Where a command looked for the journal and found none, and how to point at one: for messages."""
    url = os.environ.get("FASTPOSE_JOURNAL_URL")
    if url:
        return f"no journal at {where_journal(url)} ($FASTPOSE_JOURNAL_URL)"
    home = os.environ.get("FASTPOSE_HOME")
    if home:
        return f"no journal at {Path(home) / JOURNAL_FILE} ($FASTPOSE_HOME)"
    try:
        cwd = str(Path.cwd())
    except OSError:
        cwd = "the working directory"
    return (f"no journal found: no {JOURNAL_DIR}/{JOURNAL_FILE} in {cwd} or any directory above it; run from "
            f"the project that holds the journal, or set FASTPOSE_HOME=DIR (the folder with {JOURNAL_FILE})")


def journal_url() -> str:
    """``$FASTPOSE_JOURNAL_URL`` else ``sqlite:///<home>/fastpose.db`` (absolute path)."""
    url = os.environ.get("FASTPOSE_JOURNAL_URL")
    if url:
        return url
    return f"sqlite:///{(journal_home() / JOURNAL_FILE).absolute()}"


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL; None for other databases (or in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return None
    scheme, sep, rest = url.partition(":///")
    if not sep or scheme.split("+")[0] != "sqlite":
        raise JournalError(f"unsupported SQLite URL {url!r}: use sqlite:///PATH")
    path = unquote(rest.split("?", 1)[0])
    if not path or path == ":memory:":
        return None
    return Path(path)


def migrations_dir() -> Path:
    """Alembic's script location: ``fastpose/_migrations`` in a wheel, ``migrations/`` in the source tree."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise JournalError(f"journal migrations not found next to {package} (broken install?)")


def check_run_label(label: object) -> str:
    """``label`` if it can name a run directory under ``<home>/runs``; else FastposeError (nothing written).

    Labels are built from validated parts (``RunConfig.label()``); this is the journal's own guard that no
    label (and so no run directory or spool) can leave the journal home: no absolute path, no ``.``/``..``
    or empty component, no backslash or control character.
    """
    if not isinstance(label, str) or not label.strip() or len(label) > 255:
        raise FastposeError(f"invalid run label {label!r}: 1-255 characters")
    parts = label.split("/")
    if (label.startswith("/") or "\\" in label or any(p in ("", ".", "..") for p in parts)
            or any(ord(c) < 32 or ord(c) == 127 for c in label)):
        raise FastposeError(f"invalid run label {label!r}: it names a directory under <home>/runs and must stay there")
    return label


def run_dir_for(home: Path, label: str) -> Path:
    """``<home>/runs/<label>``, refused (FastposeError) if the label would place it anywhere else."""
    runs = (Path(home) / "runs").absolute()
    path = runs / check_run_label(label)
    if not os.path.realpath(path).startswith(os.path.realpath(runs) + os.sep):
        raise FastposeError(f"invalid run label {label!r}: {path} is outside {runs}")
    return path


# --------------------------------------------------------------------------------------- SQLite


# POSIX record locks belong to a process, not to a file descriptor: closing *any* descriptor of the journal
# file drops every lock this process holds on it, SQLite's included. Another process may then believe it is
# the last user, checkpoint and delete the WAL, and this process's later commits go to a WAL file nobody
# else can see (lost until it closes; a second writer would corrupt the file). So every SQLite connection
# fastpose opens is counted here, and the raw-header check (``check_sqlite_file``) never opens the file
# while this process holds one. A connection dropped without ``close()`` stays counted: the check is then
# skipped for that file in this process (SQLite still refuses a damaged file itself), never wrongly failed.
_HELD: Counter[str] = Counter()
_HELD_LOCK = threading.Lock()


def _file_key(database: object) -> str | None:
    """The real path of a sqlite3 ``database`` argument (a path or a ``file:`` URI); None for memory."""
    text = os.fspath(database) if isinstance(database, (str, os.PathLike)) else str(database)
    if text.startswith("file:"):
        text = unquote(urlsplit(text).path)
    if not text or text == ":memory:":
        return None
    return os.path.realpath(text)


class _CountedConnection(sqlite3.Connection):
    """A ``sqlite3.Connection`` that counts itself in ``_HELD`` while open (SQLAlchemy's too, via ``factory``)."""

    def __init__(self, database, *args, **kwargs) -> None:  # noqa: ANN001
        super().__init__(database, *args, **kwargs)
        self._held_key = _file_key(database)
        if self._held_key:
            with _HELD_LOCK:
                _HELD[self._held_key] += 1

    def close(self) -> None:
        key, self._held_key = self._held_key, None
        try:
            super().close()
        finally:
            if key:
                with _HELD_LOCK:
                    _HELD[key] -= 1
                    if _HELD[key] <= 0:
                        del _HELD[key]


def holds_connection(path: Path) -> bool:
    """Does this process have a SQLite connection open on ``path`` (see ``_HELD``)?"""
    with _HELD_LOCK:
        return _HELD.get(os.path.realpath(path), 0) > 0


def connect_sqlite(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A stdlib connection with the journal's pragmas (autocommit; ``BEGIN`` explicitly to write).

    ``readonly``: ``mode=ro``; where SQLite cannot even create the WAL index beside a read-only journal (a
    read-only directory or file system), ``immutable=1``, which reads the file as it is without any lock.
    """
    if readonly:
        conn = None
        for extra in ("", "&immutable=1"):
            conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro{extra}", uri=True, isolation_level=None,
                                   factory=_CountedConnection)
            try:
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
                break
            except sqlite3.OperationalError as exc:
                conn.close()
                if extra or "locked" in str(exc).lower() or "busy" in str(exc).lower():
                    raise  # a lock is no reason to read the file without locks (immutable)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                               factory=_CountedConnection)
    _sqlite_pragmas(conn, readonly=readonly)
    return conn


def _sqlite_pragmas(
    conn: sqlite3.Connection, *, readonly: bool = False, foreign_keys: bool = True, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> None:
    cur = conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    if not readonly:
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
    cur.close()


def check_sqlite_file(path: Path) -> None:
    """Refuse, without touching it, a file that is not a SQLite database or is visibly cut short.

    Reads the 100-byte header only: the magic string, the page size, and the page count (when the header
    says it is valid) against the file's size, so a truncated journal is refused before any connection
    could write to it. Damage inside the pages surfaces later, as ``damaged_journal`` errors.
    """
    if path.is_dir():
        raise JournalError(f"journal path {path} is a directory, not a SQLite database file")
    if holds_connection(path):  # checked when the first one opened; reopening would drop its locks (_HELD)
        return
    try:
        with open(path, "rb") as f:
            head = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise JournalError(f"cannot read journal {path}: {exc.strerror or exc}") from None
    if not head:
        return  # empty: SQLite treats it as a new database
    wal = path.with_name(path.name + "-wal")
    if head[: len(_SQLITE_MAGIC)] != _SQLITE_MAGIC[: len(head)] or (len(head) >= 16 and head[:16] != _SQLITE_MAGIC):
        raise JournalError(f"{path} is not a SQLite database; move it away or set $FASTPOSE_JOURNAL_URL")
    if len(head) < 100:
        raise damaged_journal(path, f"only {size} bytes, cut short inside the header")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise damaged_journal(path, f"invalid page size {page_size} in the header")
    pages = int.from_bytes(head[28:32], "big")
    header_size_valid = head[24:28] == head[92:96] and pages > 0
    # A checkpoint that a full disk cut short leaves the header's page count ahead of the file; the pages
    # are still in the WAL beside it, which SQLite reads first. Only a file without a WAL is truncated.
    if header_size_valid and size < pages * page_size and not _nonempty(wal):
        raise damaged_journal(path, f"truncated: {size} bytes where the header says {pages * page_size}")


def journal_exists(url: str) -> bool:
    """Is there a journal at ``url``? A SQLite file that is missing or empty is none; a server's is assumed
    (opening it tells)."""
    path = sqlite_path(url) if url.startswith("sqlite") else None
    return path is None or _nonempty(path)


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


# The byte of a WAL journal's "-shm" file every SQLite connection holds a shared lock on while it is open
# (os_unix.c: UNIX_SHM_DMS = UNIX_SHM_BASE + SQLITE_SHM_NLOCK = 120 + 8). Whoever gets it exclusively is alone.
_SHM_DMS_BYTE = 128


def drop_orphan_wal(path: Path) -> bool:
    """Remove the ``-wal`` and ``-shm`` files beside ``path`` when no connection anywhere uses them.

    For a process that has just closed its connections to a journal file deleted or replaced under it.
    SQLite removes these files when the last connection closes, except when the database file was unlinked
    meanwhile: then they stay, and the next file at the path is read together with the old file's WAL (another
    journal would look like this one, with this one's identity). Nobody uses them when the ``-shm``'s lock
    byte can be taken exclusively, SQLite's own test. True when they were removed.
    """
    import fcntl

    shm, wal = path.with_name(path.name + "-shm"), path.with_name(path.name + "-wal")
    try:
        fd = os.open(shm, os.O_RDWR)
    except OSError:
        return False
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS_BYTE)
        except OSError:
            return False  # a connection somewhere still has them: it lets go itself when it notices
        for leftover in (wal, shm):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass
        return True
    finally:
        os.close(fd)


def damaged_journal(path: Path | str, why: object) -> JournalError:
    """The one-line error for a journal file whose content is damaged (it is never modified)."""
    return JournalError(
        f"journal {path} is damaged ({why}); it was left untouched: restore a backup "
        f"({Path(str(path)).name}.bak-*) or move it away to start a new journal"
    )


def is_writable(path: Path) -> bool:
    """Can this process write the SQLite journal at ``path`` (the file and the directory for its WAL)?"""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def sqlite_revision(path: Path) -> str | None:
    """The Alembic revision of an existing SQLite journal, read without writing (None: no schema yet)."""
    check_sqlite_file(path)
    if path.stat().st_size == 0:
        return None
    try:
        conn = connect_sqlite(path, readonly=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "alembic_version" not in tables:
                if tables - {"sqlite_sequence"}:
                    raise JournalError(f"{path} is a SQLite database but not a fastpose journal")
                return None
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        raise JournalError(f"cannot read journal {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:  # SQLITE_CORRUPT, SQLITE_NOTADB
        raise damaged_journal(path, exc) from None
    if len(rows) > 1:
        raise JournalError(f"journal {path} has several schema revisions {rows}; it is not a fastpose journal")
    return rows[0][0] if rows else None


# How long a process waits for another one's schema upgrade or spool replay (filelock; finite, because
# filelock refuses an endless wait on a lock another instance in the same process holds).
FILE_LOCK_WAIT_S = 3600.0


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock on ``path`` (created if missing; ``filelock``, an OS lock: released
    when the process dies). For short critical sections where the order of waiters does not matter (schema
    upgrades, spool files); the SQLite writers queue fairly on ``sqlite_write_turn`` instead."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path), timeout=FILE_LOCK_WAIT_S):
        yield


@contextmanager
def sqlite_write_turn(path: Path, timeout_s: float) -> Iterator[None]:
    """Wait for this process's turn to write the SQLite journal at ``path``: an exclusive ``flock`` on
    ``<name>.lock`` (the migration lock file), held for one write transaction.

    SQLite's own busy handler polls, up to 100 ms apart, so a writer that has waited long keeps losing the
    lock to newcomers: with 16 writers on 2 cores single epoch writes took up to 9 s. Waiters on a flock sleep
    in the kernel and are woken the moment it is free: the same load then stays under 1 s. The SQLite lock
    is still what guarantees correctness; this only orders the writers that go through the store. Raises
    ``sqlalchemy.exc.OperationalError`` ("database is locked") after ``timeout_s``, like SQLite would.

    Not ``filelock``: it polls (``LOCK_NB`` every ``poll_interval``), so a waiter loses the lock to newcomers
    between polls, the unfairness this queue exists to remove. Side by side (``tests/bench/
    bench_writer_lock.py``, 16 processes x 20 writes, medians of 3 interleaved rounds on a shared 2-core
    machine) the longest wait was 0.82 s here, 3.1 s with filelock (poll 0.05 s) and 3.5 s (poll 0.005 s).
    """
    import fcntl
    import threading

    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # Block in a helper thread so the wait can time out; if it does, the helper lets go as soon as it
        # gets the lock (and closes the descriptor), so nothing stays locked.
        state = {"acquired": False, "abandoned": False}
        guard = threading.Lock()
        got = threading.Event()

        def wait_for_lock() -> None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with guard:
                if state["abandoned"]:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                    return
                state["acquired"] = True
            got.set()

        threading.Thread(target=wait_for_lock, name="fastpose-journal-lock", daemon=True).start()
        got.wait(timeout_s)
        with guard:
            if not state["acquired"]:
                state["abandoned"] = True
                import sqlalchemy as sa

                raise sa.exc.OperationalError(
                    "BEGIN IMMEDIATE", None,
                    sqlite3.OperationalError(f"database is locked (another writer held it for {timeout_s:g} s)"),
                ) from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def backup_sqlite(path: Path) -> Path:
    """Copy the journal (a consistent snapshot, WAL included) to ``<name>.bak-<timestamp>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.bak-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.bak-{stamp}-{n}")
    src = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file, no -wal beside it
        finally:
            dst.close()
    finally:
        src.close()
    shutil.copystat(path, target)
    return target


# --------------------------------------------------------------------------------------- engines


def create_engine(url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS, create: bool = True) -> Engine:
    """A SQLAlchemy engine with the journal's connection settings (no schema check; see ``open_engine``).

    ``busy_timeout_ms``: how long a SQLite write waits for the lock (on a server: the connect timeout).
    ``create=False``: a SQLite connection opens an existing file only (``mode=rw``); where the file is gone
    it fails ("unable to open database file") instead of leaving a new empty database at the path.
    """
    import sqlalchemy as sa
    from sqlalchemy import event

    if sqlite_path(url) is None and not url.startswith("sqlite"):
        connect_args = {}
        if url.startswith("postgresql"):  # a server that does not answer must not hang a training run
            connect_args["connect_timeout"] = max(1, round(busy_timeout_ms / 1000))
        try:
            return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args, json_serializer=strict_json)
        except Exception as exc:  # noqa: BLE001 - bad URL, missing driver: one line for the user
            raise JournalError(f"cannot use journal URL {redact_url(url)}: {exc}") from None

    engine = sa.create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000, "factory": _CountedConnection},
                              json_serializer=strict_json)  # the same strict JSON on SQLite and PostgreSQL

    if not create:
        @event.listens_for(engine, "do_connect")
        def _existing_only(_dialect, _record, cargs, cparams):  # noqa: ANN001
            cargs[0] = f"{Path(cargs[0]).absolute().as_uri()}?mode=rw"
            cparams["uri"] = True

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.isolation_level = None  # let the "begin" hook below emit BEGIN itself
        _sqlite_pragmas(dbapi_conn, busy_timeout_ms=busy_timeout_ms)

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        # A deferred transaction that reads and then writes can fail with SQLITE_BUSY at once when
        # another process wrote in between; IMMEDIATE takes the write lock up front and waits for it.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


def open_engine(url: str | None = None, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS, create: bool = True) -> Engine:
    """Engine for the journal at ``url``, creating or upgrading its schema first (see module doc).

    ``create=False``: an existing journal only; a SQLite file that is not there is a ``JournalChangedError``
    (and no connection of the engine ever creates one).
    """
    url = url or journal_url()
    path = sqlite_path(url)
    if not create and path is not None and not _nonempty(path):
        raise JournalChangedError(url, "is gone (deleted or moved)" if not path.exists() else "is empty (truncated)")
    ensure_schema(url)
    return create_engine(url, busy_timeout_ms=busy_timeout_ms, create=create)


def ensure_schema(url: str) -> None:
    """Create or upgrade the journal at ``url`` to HEAD_REVISION; refuse a newer one untouched."""
    path = sqlite_path(url)
    if path is not None:
        if path.exists():
            current = sqlite_revision(path)
            if current == HEAD_REVISION:
                return
            _check_known(current, where=str(path))  # refuse a newer journal before creating even a lock file
        elif not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_name(path.name + ".lock")):
            try:
                _migrate_sqlite(url, path)
            except Exception as exc:
                if is_corruption(exc):
                    raise damaged_journal(path, _first_line(exc)) from None
                raise
        return
    if url.startswith("sqlite"):  # in-memory: nothing to back up or lock
        engine = _migration_engine(url)
        with engine.begin() as conn:
            _upgrade(conn, current=None, where="in-memory journal")
        return
    _migrate_server(url)


def _migrate_sqlite(url: str, path: Path) -> None:
    """Under the lock: re-check (another process may have just upgraded), back up, upgrade."""
    current = sqlite_revision(path) if path.exists() else None
    if current == HEAD_REVISION:
        return
    _check_known(current, where=str(path))
    if current is not None:
        backup_sqlite(path)
    engine = _migration_engine(url)
    try:
        with engine.begin() as conn:
            _upgrade(conn, current=current, where=str(path))
            bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if bad:
                raise JournalError(f"schema upgrade of {path} left broken references: {bad[:3]}")
    finally:
        engine.dispose()


def _migration_engine(url: str) -> Engine:
    """SQLite engine for migrations: foreign keys OFF, or batch table rebuilds would cascade deletes."""
    import sqlalchemy as sa
    from sqlalchemy import event

    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "factory": _CountedConnection})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.isolation_level = None
        _sqlite_pragmas(dbapi_conn, foreign_keys=False)

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _migrate_server(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            is_pg = conn.dialect.name == "postgresql"
            if is_pg:
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_LOCK_KEY})")
                conn.commit()
            try:
                from alembic.runtime.migration import MigrationContext

                current = MigrationContext.configure(conn).get_current_revision()
                conn.commit()
                if current != HEAD_REVISION:
                    _check_known(current, where=redact_url(url))
                    with conn.begin():
                        _upgrade(conn, current=current, where=redact_url(url))
            finally:
                if is_pg:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_PG_LOCK_KEY})")
                    conn.commit()
    except FastposeError:
        raise
    except Exception as exc:  # noqa: BLE001 - server unreachable etc.: one line for the user
        raise JournalError(f"cannot open journal {redact_url(url)}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()


def _script_directory():  # noqa: ANN202 - alembic ScriptDirectory
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrations_dir()))
    heads = script.get_heads()
    if heads != [HEAD_REVISION]:
        raise JournalError(f"journal migrations must have the single head {HEAD_REVISION}, found {heads}")
    return script


def _check_known(current: str | None, where: str) -> None:
    if current is None:
        return
    known = {rev.revision for rev in _script_directory().walk_revisions()}
    if current not in known:
        raise JournalError(
            f"journal {where} has schema revision {current!r}, newer than this fastpose knows "
            f"(up to {HEAD_REVISION!r}); upgrade fastpose to use it (the journal was left untouched)"
        )


def alembic_config(url: str, connection: Connection | None = None):  # noqa: ANN201 - alembic Config
    """Alembic's Config built in code: no alembic.ini needed at run time."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(conn: Connection, current: str | None, where: str) -> None:
    from alembic import command

    _script_directory()  # single head
    command.upgrade(alembic_config(str(conn.engine.url), conn), "head")


def is_corruption(exc: BaseException) -> bool:
    """Is ``exc`` SQLite saying the file is damaged (not locked, not a constraint)?"""
    orig = getattr(exc, "orig", exc)
    return isinstance(orig, sqlite3.DatabaseError) and not isinstance(
        orig, (sqlite3.OperationalError, sqlite3.IntegrityError, sqlite3.ProgrammingError)
    )


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", exc)
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and spool lines."""
    if url.startswith("sqlite"):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<unparsable URL>"
