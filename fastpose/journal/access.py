"""Opening the journal for a command: the fastest reader (``open_reader``), one run without creating a journal
(``read_run``), and marking runs whose process is gone (``mark_lost``: a read that may need the write path).
The one module that knows both the stdlib reader and the SQLAlchemy store."""

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
