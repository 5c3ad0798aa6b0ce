"""User-facing errors: one clear line and exit code 2, never a traceback (unless FASTPOSE_DEBUG=1).

Failures the user's environment causes (permissions, a locked or read-only journal) become such a line in
``fastpose.journal.failures.as_user_error``, which ``fastpose.cli`` applies to whatever a command raises.

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


