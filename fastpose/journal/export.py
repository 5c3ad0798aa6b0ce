"""Where ``journal export`` may write, and how: it never destroys anything.

Refused (exit 2, one line, nothing written): the journal database itself and every file SQLite or fastpose
keeps beside it (``-wal``, ``-shm``, ``-journal``, the writer lock, upgrade backups), anything under the
journal's run directories, directories, symbolic links, devices, FIFOs and sockets, paths under ``/proc``,
``/sys`` and ``/dev``, names too long for the file system, and an existing file unless ``--force``.
The Markdown is written to a unique temporary file in the target's directory, flushed, and renamed over
the target, so a reader sees the old file or the new one, never half of one, and two exports to one
path at once both succeed (the last rename wins).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from fastpose.errors import FastposeError
from fastpose.text import visible

_SYSTEM_TREES = ("/proc", "/sys", "/dev")


def _journal_files() -> list[Path]:
    """Real paths of the journal database and its companions (SQLite journals only)."""
    from fastpose.journal.db import journal_home, journal_url, sqlite_path

    out = []
    try:
        db = sqlite_path(journal_url())
    except FastposeError:
        db = None
    if db is not None:
        out.append(Path(os.path.realpath(db)))
    out.append(Path(os.path.realpath(journal_home() / "fastpose.db")))
    return out


def _is_journal_file(real: Path) -> bool:
    from fastpose.journal.db import journal_home

    for db in _journal_files():
        if real == db or (real.parent == db.parent and real.name.startswith(db.name)):
            return True  # fastpose.db, -wal, -shm, -journal, .lock, .bak-<time>, ...
    runs = Path(os.path.realpath(journal_home() / "runs"))
    return runs in real.parents


def check_export_target(path: Path, *, force: bool = False) -> Path:
    """``path`` if the export may write there; else FastposeError naming the reason (see module docstring)."""
    shown = visible(path, newlines=False)
    text = os.fspath(path)
    if not text or "\x00" in text:
        raise FastposeError("export needs a file name like journal.md")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:  # ENAMETOOLONG, ELOOP, ENOTDIR, EACCES
        raise FastposeError(f"cannot export to {shown}: {exc.strerror or exc}") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise FastposeError(f"refusing to export to {shown}: it is a symbolic link; give the real file")
        if stat.S_ISDIR(st.st_mode):
            raise FastposeError(f"refusing to export to {shown}: it is a directory; give a file name like journal.md")
        if not stat.S_ISREG(st.st_mode):
            raise FastposeError(f"refusing to export to {shown}: not a regular file (a device, FIFO or socket)")
    parent = path.parent
    try:
        real_parent = Path(os.path.realpath(parent))
        if not parent.is_dir():
            raise FastposeError(f"cannot export to {shown}: directory {visible(parent, newlines=False)} does not exist")
    except OSError as exc:
        raise FastposeError(f"cannot export to {shown}: {exc.strerror or exc}") from None
    real = real_parent / path.name
    if any(real == Path(t) or Path(t) in real.parents for t in _SYSTEM_TREES):
        raise FastposeError(f"refusing to export to {shown}: under {real.parts[1] and '/' + real.parts[1]}")
    if _is_journal_file(real):
        raise FastposeError(f"refusing to export to {shown}: it is the journal or one of its files")
    if len(os.fsencode(path.name)) > 255 - 16:  # room for the temporary file's suffix
        raise FastposeError(f"cannot export to {shown}: file name too long")
    if st is not None and not force:
        raise FastposeError(f"{shown} exists; pass --force to replace it")
    if not os.access(real_parent, os.W_OK | os.X_OK) or (st is not None and not os.access(path, os.W_OK)):
        raise FastposeError(f"cannot export to {shown}: permission denied")
    return path


def write_atomically(path: Path, text: str, *, force: bool = False) -> None:
    """Write ``text`` through a unique temporary file beside ``path``, then rename it over ``path``."""
    shown = visible(path, newlines=False)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise FastposeError(f"cannot export to {shown}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if force:
            os.replace(tmp, path)
        else:
            # No --force: link() refuses to replace a file that appeared since the check; rename() would not.
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FastposeError(f"{shown} exists; pass --force to replace it") from None
            os.unlink(tmp)
    except OSError as exc:
        raise FastposeError(f"cannot export to {shown}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
