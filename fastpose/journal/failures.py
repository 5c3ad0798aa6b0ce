"""Failures a user causes from outside the program, as one line: ``as_user_error`` is the one place where file
system permissions, a read-only or full disk, a journal locked by another process or a path that is too long
become a ``FastposeError`` (exit 2). ``fastpose.cli`` applies it to whatever a command raises; anything it
does not recognise is a bug and keeps its traceback. It lives with the journal because most of what it reads
are the journal's database errors."""

from __future__ import annotations

import errno

from fastpose.errors import FastposeError, JournalBusyError


_OS_USER_ERRNOS = {
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.ENOTDIR,
    errno.EISDIR, errno.ENOENT, errno.ELOOP, errno.EEXIST, errno.EMFILE, errno.ENFILE, errno.EFBIG,
}


def as_user_error(exc: BaseException) -> FastposeError | None:
    """``exc`` as a one-line FastposeError when the user's environment caused it, else None."""
    if isinstance(exc, FastposeError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _OS_USER_ERRNOS:
        where = exc.filename if exc.filename is not None else ""
        return FastposeError(f"{exc.strerror or exc}" + (f": {where}" if where else ""))
    message = _database_message(exc)
    if message is None:
        return None
    low = message.lower()
    if "locked" in low or "busy" in low:
        return JournalBusyError("journal busy (another process held it locked past the timeout); try again")
    if "readonly" in low or "read-only" in low:
        return FastposeError(f"the journal is read-only, nothing was written ({message})")
    if "disk is full" in low or "no space" in low:
        return FastposeError(f"the disk is full, nothing was written ({message})")
    if "disk i/o error" in low and _journal_disk_full():
        return FastposeError(f"the disk holding the journal is full, nothing was written ({message})")
    if "unable to open database" in low or "disk i/o error" in low:
        return FastposeError(f"cannot open the journal database ({message}); check the path and its permissions")
    return None


def _database_message(exc: BaseException) -> str | None:
    """The driver's message of an operational database error (sqlite3 or SQLAlchemy-wrapped), else None."""
    import sqlite3
    import sys

    orig = exc
    sa = sys.modules.get("sqlalchemy.exc")
    if sa is not None and isinstance(exc, sa.OperationalError):
        orig = exc.orig or exc
    if isinstance(orig, sqlite3.OperationalError):
        return str(orig).strip().splitlines()[0] if str(orig).strip() else "operational error"
    return None


def _journal_disk_full() -> bool:
    """Is the file system of the SQLite journal out of space? (SQLite reports that as a disk I/O error when
    it cannot even create its WAL index.)"""
    import os

    try:
        from fastpose.journal.db import journal_url, sqlite_path

        path = sqlite_path(journal_url())
        if path is None:
            return False
        st = os.statvfs(path.parent)
        return st.f_bavail * st.f_frsize < 64 * 1024
    except Exception:  # noqa: BLE001 - only a better message is at stake
        return False
