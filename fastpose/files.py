"""Reading a file the user names: a regular file only, at most a stated size, every refusal one line.

Torch-free, stdlib only. Every file fastpose reads because a user named it (``--config``, a sweep file,
``predict``'s images) is opened here:

| the path is | what happens |
| --- | --- |
| a regular file (or a symbolic link to one), at most ``limit`` bytes | read |
| a regular file over ``limit`` bytes | refused: ``cannot read <what> '<path>': it is 3.0 MiB, over the limit of 1.0 MiB`` |
| a directory | refused: ``... is a directory`` |
| a character or block device (``/dev/zero``, ``/dev/urandom``) | refused: it would read without end |
| a FIFO or a socket | refused: reading would wait for a writer that may never come |
| missing, unreadable, a loop of links | refused with the system's reason |

The path is opened with ``O_NONBLOCK`` (opening a FIFO that has no writer then returns at once instead of
waiting) and the checks are made with ``fstat`` on the open descriptor, so the file checked is the file
read, even if the path is replaced in between. The size is checked again while reading, for a file that
grows. The refusals are ``FastposeError`` (exit 2); callers that know more (a config file) re-raise them as
their own kind.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from fastpose.errors import FastposeError


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, which would read without end"
    if stat.S_ISFIFO(mode):
        return "a FIFO, which would wait for a writer"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def size_text(n: int) -> str:
    """``n`` bytes for a person: ``512 bytes``, ``1.0 MiB``, ``2.5 GiB``."""
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def open_user_file(path: str | os.PathLike[str], what: str, limit: int) -> BinaryIO:
    """``path`` opened for binary reading, after the checks of the module docstring; ``what`` names the
    file in messages (``"config file"``, ``"image"``). The caller closes it."""
    shown = repr(os.fsdecode(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if exc.errno is not None and exc.errno == getattr(os, "ENXIO", None):  # a socket, or a FIFO on some systems
            reason = "not a regular file"
        raise FastposeError(f"cannot read {what} {shown}: {reason}") from None
    except ValueError:  # an embedded NUL character
        raise FastposeError(f"cannot read {what} {shown}: the path holds a NUL character") from None
    try:
        st = os.fstat(fd)
        kind = _kind(st.st_mode)
        if kind is not None:
            raise FastposeError(f"cannot read {what} {shown}: it is {kind}; give a regular file")
        if st.st_size > limit:
            raise FastposeError(f"cannot read {what} {shown}: it is {size_text(st.st_size)}, over the limit of "
                                f"{size_text(limit)}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_user_file(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    """The bytes of ``path`` (see ``open_user_file``); more than ``limit`` bytes, even from a file that grew
    after it was opened, is refused."""
    with open_user_file(path, what, limit) as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:  # EIO, EISDIR on odd file systems
            raise FastposeError(f"cannot read {what} {os.fsdecode(path)!r}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise FastposeError(f"cannot read {what} {os.fsdecode(path)!r}: it grew over the limit of {size_text(limit)}")
    return data

