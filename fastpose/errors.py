"""User-facing errors: one clear line and exit code 2, never a traceback (unless FASTPOSE_DEBUG=1).

``as_user_error`` is the one place where failures a user causes from outside the program (file system
permissions, a read-only or full disk, a journal locked by another process, a path that is too long) are
turned into such a line. ``fastpose.cli.run`` applies it to whatever a command raises; anything it does not
recognise is a bug and keeps its traceback.

``disk_full`` finds a full file system (ENOSPC, or EDQUOT: the user's quota spent) behind any failure, however
deep in its chain of causes, and names the file that was being written: a run that fills its disk is journaled
as crashed with that reason (``fastpose.training.runner``).
"""

from __future__ import annotations

import errno


class FastposeError(Exception):
    """An error the user can fix (bad input, unknown run, missing file). Message is one line."""

    exit_code = 2


class JournalBusyError(FastposeError):
    """The journal stayed locked by another process past the timeout."""


class DiskFullError(FastposeError):
    """A write failed because its file system is full (ENOSPC) or the user's disk quota is spent (EDQUOT)."""

    def __init__(self, path: object = None, code: int = errno.ENOSPC) -> None:
        self.path = None if path is None else str(path)
        self.code = code
        what = "disk quota exceeded" if code == errno.EDQUOT else "no space left on device"
        super().__init__(f"{what} while writing {self.path}" if self.path else what)


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException, where: object = None) -> DiskFullError | None:
    """The full disk behind ``exc`` as a ``DiskFullError`` naming the file being written, or None.

    Looks through ``exc`` and its causes and contexts (a checkpoint write that failed inside ``torch.save``,
    a TensorBoard writer's error re-raised by its owner, a second failure while Lightning cleaned up) and takes
    the oldest: the write that failed first. The file is the one a ``DiskFullError`` names, else the
    ``OSError``'s ``filename``, else the ``filename`` of the innermost frame that raised it (a write or a
    close names no file: the function that opened it does), else ``where``.
    """
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    for found in reversed(chain):
        if isinstance(found, DiskFullError):
            return found
    for found in reversed(chain):
        if isinstance(found, OSError) and found.errno in DISK_FULL_ERRNOS:
            return DiskFullError(found.filename or _file_being_written(found) or where, found.errno)
    return None


def _file_being_written(exc: BaseException) -> str | None:
    """The ``filename`` variable of the innermost frame of ``exc``'s traceback that has one."""
    import os

    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        name = frame.f_locals.get("filename")
        if isinstance(name, (str, bytes, os.PathLike)) and os.fspath(name):
            return os.fsdecode(name)
    return None


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
