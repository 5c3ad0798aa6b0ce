"""Disk use of runs (``fastpose journal du``, the size in ``journal show``, what ``rm`` and ``gc`` free). Torch-free.

A run's files live in its run directory; each file is counted in one part by where it lies:

| part          | files                                                                  |
| ------------- | ---------------------------------------------------------------------- |
| `checkpoints` | everything under `checkpoints/` (best, last, periodic, temporary files) |
| `tensorboard` | everything under `tensorboard/` (events, images)                        |
| `logs`        | `*.log`, `*.out`, `*.err`, the journal spool files                      |
| `other`       | the rest (evaluation plots, prediction overlays, ...)                   |

Hard links are counted once: a file is counted at its first name met (``seen``, keyed by device and inode),
so ``best-epoch004.ckpt`` and ``last.ckpt`` linked to one file count once, and a total over many runs counts
each file once. Sizes are file sizes (``du --apparent-size``: the checkpoint table of ``journal show`` gives
the same figures; what the disk frees differs by the rounding to its blocks). Symbolic links count as
themselves and are never followed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

PARTS = ("checkpoints", "tensorboard", "logs", "other")
LOG_SUFFIXES = (".log", ".out", ".err")
LOG_PREFIXES = ("journal-spool",)


@dataclass
class DiskUse:
    """Bytes per part (``PARTS``), the number of files counted, and whether the directory is here at all."""

    parts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PARTS, 0))
    files: int = 0
    here: bool = True

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def add(self, other: DiskUse) -> None:
        for part, size in other.parts.items():
            self.parts[part] += size
        self.files += other.files

    def to_json(self) -> dict:
        return {"bytes": self.total, "files": self.files, "here": self.here, **{p: self.parts[p] for p in PARTS}}


def part_of(relative: Path) -> str:
    """The part (``PARTS``) a file counts in, from its path relative to the run directory."""
    top = relative.parts[0] if relative.parts else ""
    if top in ("checkpoints", "tensorboard"):
        return top
    name = relative.name
    if name.endswith(LOG_SUFFIXES) or name.startswith(LOG_PREFIXES):
        return "logs"
    return "other"


def file_size(st: os.stat_result) -> int:
    """The bytes a file counts for (its size; a symbolic link: the length of its target's name)."""
    return st.st_size


def directory_use(path: str | Path | None, seen: set[tuple[int, int]] | None = None,
                  part: str | None = None) -> DiskUse:
    """The disk use of the directory ``path`` (a run directory; ``part``: count everything in that part).

    ``seen`` carries the files counted already (shared over many calls: each file counted once). A
    directory that is not there (another machine's run, already removed) is ``here=False`` with 0 bytes.
    """
    seen = set() if seen is None else seen
    use = DiskUse()
    if not path:
        use.here = False
        return use
    root = Path(path)
    try:
        if root.is_symlink() or not root.is_dir():
            use.here = False
            return use
    except OSError:
        use.here = False
        return use
    for folder, dirs, files in os.walk(root, onerror=lambda exc: None):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            full = os.path.join(folder, name)
            try:
                st = os.lstat(full)
            except OSError:  # removed while we walked
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            use.parts[part or part_of(Path(full).relative_to(root))] += file_size(st)
            use.files += 1
    return use


def files_use(paths: Iterable[str | Path], seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes freed by removing the files ``paths`` (hard links: a file is freed only when every one of its
    names is among them)."""
    seen = set() if seen is None else seen
    names: dict[tuple[int, int], list[os.stat_result]] = {}
    for path in paths:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        names.setdefault((st.st_dev, st.st_ino), []).append(st)
    total = 0
    for key, stats in names.items():
        if key in seen or len(stats) < stats[0].st_nlink:
            continue  # another name keeps the file
        seen.add(key)
        total += file_size(stats[0])
    return total


def journal_files_use(url: str) -> int | None:
    """Bytes of a SQLite journal's files (database, WAL, shared memory); None for a database server."""
    from fastpose.journal.db import sqlite_path

    path = sqlite_path(url)
    if path is None:
        return None
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += file_size(os.stat(f"{path}{suffix}"))
        except OSError:
            pass
    return total


CHECKPOINT_KINDS = ("best", "last", "periodic", "other")


def checkpoint_kind(name: str) -> str:
    """What a file in a run's ``checkpoints/`` is, by its name: ``best`` (``best-epochNNN.ckpt``, the monitor's
    best), ``last`` (``last.ckpt``, what ``resume`` continues), ``periodic`` (``epochNNN.ckpt``, ``--save-every``)
    or ``other`` (an interrupted write's temporary file, anything else)."""
    import re

    if name.startswith("best") and name.endswith(".ckpt"):
        return "best"
    if name == "last.ckpt":
        return "last"
    if re.fullmatch(r"epoch\d+\.ckpt", name):
        return "periodic"
    return "other"
