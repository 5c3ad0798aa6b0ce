"""Opening the journal for a command: the fastest reader (``open_reader``), one run without creating a journal
(``read_run``), marking runs whose process is gone (``mark_lost``: a read that may need the write path), and a
reader that can never write (``ReadOnlyJournal``: the web view's). The one module that knows both the stdlib
reader and the SQLAlchemy store."""

from __future__ import annotations

from typing import Any

from fastpose.errors import FastposeError
from fastpose.journal import db
from fastpose.journal.reader import JournalReader, SqliteReader
from fastpose.journal.records import RunRecord


def open_reader(url: str | None = None) -> JournalReader | None:
    """The fastest reader for the journal at ``url``; None when a SQLite journal does not exist yet.

    An up-to-date SQLite journal is read with ``sqlite3``; anything else goes through ``JournalStore.open``
    (which creates, upgrades or refuses it).
    """
    url = url or db.journal_url()
    path = db.sqlite_path(url)
    if path is not None:
        if not path.exists():
            return None
        if db.sqlite_revision(path) == db.HEAD_REVISION:
            return SqliteReader(path, url, readonly=not db.is_writable(path))
    from fastpose.journal.store import JournalStore

    return JournalStore.open(url)


def read_run(ref: str, if_empty: FastposeError) -> RunRecord:
    """The run ``ref`` names, read without creating a journal: ``if_empty`` is raised when there is none yet
    (``UnknownRunError`` when nothing matches)."""
    reader = open_reader()
    if reader is None:
        raise if_empty
    try:
        return reader.resolve(ref)
    finally:
        reader.close()


def mark_lost(reader: Any, lost_after: float | None = None) -> list[RunRecord]:
    """Mark ``lost`` every running run whose process is gone (or, on another machine, whose heartbeat is too
    old); returns them. A read-only journal raises ``JournalError`` when there is something to mark."""
    if not isinstance(reader, SqliteReader):  # the store: it writes itself
        return reader.mark_lost(lost_after)
    candidates = reader.lost_candidates(lost_after)
    if not candidates:
        return []  # the everyday case: no SQLAlchemy import
    if reader.readonly:
        raise db.JournalError(f"the journal {reader.path} is read-only: {len(candidates)} run(s) whose process "
                              "is gone are shown as they were recorded, not marked lost")
    from fastpose.journal.store import JournalStore  # the write path, rarely needed

    with JournalStore.open(reader.url) as store:
        return store.mark_lost(lost_after)


def open_readonly(url: str | None = None) -> JournalReader:
    """A reader that never writes: no journal is created, none is upgraded, no run is marked lost.

    The journal must be at this fastpose's schema revision (``db.HEAD_REVISION``); an older one is refused
    with one line that says how to upgrade it (any ``fastpose`` command does), a newer one as ``open`` does.
    """
    url = url or db.journal_url()
    path = db.sqlite_path(url)
    where = db.where_journal(url)
    if path is not None:
        if not path.exists():
            raise db.JournalError(f"no journal at {where}")
        db.check_sqlite_file(path)
        revision = db.sqlite_revision(path)
        _check_revision(revision, where)
        return SqliteReader(path, url, readonly=True)
    from fastpose.journal.store import JournalStore

    engine = db.create_engine(url)
    try:
        with engine.connect() as conn:
            revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except Exception as exc:  # noqa: BLE001 - unreachable, no journal there: one line
        engine.dispose()
        raise db.JournalError(f"cannot read journal {where}: {str(exc).strip().splitlines()[0]}") from None
    try:
        _check_revision(revision, where)
    except FastposeError:
        engine.dispose()
        raise
    return JournalStore(engine, url)


def _check_revision(revision: str | None, where: str) -> None:
    if revision == db.HEAD_REVISION:
        return
    if revision is not None and revision > db.HEAD_REVISION:
        raise db.JournalError(f"journal {where} has schema revision {revision!r}, newer than this fastpose knows "
                              f"(up to {db.HEAD_REVISION!r}); upgrade fastpose to read it")
    raise db.JournalError(f"journal {where} has schema revision {revision!r}, older than this fastpose's "
                          f"{db.HEAD_REVISION!r}; it is read as it is only: run `fastpose journal` once to upgrade it")


class JournalMissingError(db.JournalError):
    """There is no journal at the URL yet (no SQLite file, or a database without fastpose's schema)."""


class JournalOutdatedError(db.JournalError):
    """The journal has an older schema revision than this fastpose: any ``fastpose`` command upgrades it."""


class ReadOnlyJournal:
    """The journal at ``url`` for reading only: never created, migrated or written, whatever is asked of it.

    | backend    | how it cannot write                                                            |
    | ---------- | ------------------------------------------------------------------------------ |
    | SQLite     | ``sqlite3`` with ``mode=ro`` (``immutable=1`` where not even the WAL index can be made) |
    | PostgreSQL | every session ``default_transaction_read_only = on`` (and a statement timeout)  |

    ``reader()`` opens one reader for one unit of work (a web request): it checks the schema revision first
    and raises ``JournalMissingError`` (nothing there), ``JournalOutdatedError`` (an older revision: any
    ``fastpose`` command upgrades it), or ``db.JournalError`` (a newer or foreign schema, a damaged file, an
    unreachable server). Lost runs are not marked here (a write): ``reader.lost_candidates()`` tells them.
    """

    def __init__(self, url: str | None = None, *, busy_timeout_ms: int = 2000, statement_timeout_ms: int = 10_000) -> None:
        self.url = url or db.journal_url()
        self.path = db.sqlite_path(self.url)
        if self.path is None and self.url.startswith("sqlite"):
            raise db.JournalError("an in-memory SQLite journal cannot be shared; give a file (sqlite:///PATH)")
        self.busy_timeout_ms = busy_timeout_ms
        self.statement_timeout_ms = statement_timeout_ms
        self._engine: Any = None

    @property
    def where(self) -> str:
        return db.where_journal(self.url)

    def reader(self) -> JournalReader:
        return self._sqlite_reader() if self.path is not None else self._server_reader()

    def _sqlite_reader(self) -> JournalReader:
        import sqlite3

        path = self.path
        assert path is not None
        if not path.exists() or (path.is_file() and path.stat().st_size == 0):
            raise JournalMissingError(f"no journal at {path} yet: runs write it (fastpose train ...)")
        db.check_sqlite_file(path)
        try:
            reader = SqliteReader(path, self.url, readonly=True)
        except sqlite3.DatabaseError as exc:
            raise _sqlite_error(path, exc) from None
        try:
            reader._conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            self._check_revision(reader, "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'")
        except BaseException:
            reader.close()
            raise
        return reader

    def _server_reader(self) -> JournalReader:
        from fastpose.journal.store import JournalStore

        if self._engine is None:
            self._engine = _read_only_engine(self.url, self.statement_timeout_ms)
        reader = JournalStore(self._engine, self.url)
        reader.close = _keep_engine  # type: ignore[method-assign] - the engine (its pool) outlives the request
        try:
            self._check_revision(reader, "SELECT table_name AS name FROM information_schema.tables "
                                         "WHERE table_name = 'alembic_version' AND table_schema = current_schema()")
        except db.JournalError:
            raise
        except Exception as exc:  # noqa: BLE001 - server down, refused login: one line
            raise db.JournalError(f"cannot read journal {self.where}: {db._first_line(exc)}") from None
        return reader

    def _check_revision(self, reader: JournalReader, has_table: str) -> None:
        try:
            if not reader._fetch(has_table):
                if self.path is not None and reader._fetch(
                        "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence'"):
                    raise db.JournalError(f"{self.path} is a SQLite database but not a fastpose journal")
                raise JournalMissingError(f"{self.where} holds no fastpose journal yet: runs write it (fastpose train ...)")
            rows = reader._fetch("SELECT version_num FROM alembic_version")
        except db.JournalError:
            raise
        except Exception as exc:
            if self.path is not None:
                import sqlite3

                if isinstance(exc, sqlite3.DatabaseError):
                    raise _sqlite_error(self.path, exc) from None
            raise
        current = rows[0]["version_num"] if len(rows) == 1 else None
        if current == db.HEAD_REVISION:
            return
        if current is None:
            raise db.JournalError(f"journal {self.where} has {len(rows)} schema revisions; it is not a fastpose journal")
        db._check_known(current, where=self.where)  # newer than this fastpose: refused, as the commands refuse it
        raise JournalOutdatedError(
            f"journal {self.where} has schema revision {current}, older than this fastpose's {db.HEAD_REVISION}: "
            "run any fastpose command once (fastpose journal) to upgrade it; the web view never writes it")

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _keep_engine() -> None:
    """A request's reader on a server closes nothing: the engine's pool serves the next request."""


def _read_only_engine(url: str, statement_timeout_ms: int) -> Any:
    """A SQLAlchemy engine whose every PostgreSQL session is read-only (``default_transaction_read_only``)."""
    import sqlalchemy as sa

    if not url.startswith("postgresql"):
        raise db.JournalError(f"the web view reads SQLite or PostgreSQL journals, not {url.split(':', 1)[0]}")
    options = f"-c default_transaction_read_only=on -c statement_timeout={int(statement_timeout_ms)}"
    try:
        return sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4,
                                connect_args={"connect_timeout": 5, "options": options})
    except Exception as exc:  # noqa: BLE001 - bad URL, missing driver: one line
        raise db.JournalError(f"cannot use journal URL {db.redact_url(url)}: {exc}") from None


def _sqlite_error(path: Any, exc: BaseException) -> FastposeError:
    """A sqlite3 error met while opening a journal read-only, as one line (busy errors stay as they are)."""
    text = db._first_line(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        from fastpose.errors import JournalBusyError

        return JournalBusyError(f"journal {path} is busy (another process holds it locked); try again")
    if db.is_corruption(exc):
        return db.damaged_journal(path, text)
    return db.JournalError(f"cannot read journal {path}: {text}")
