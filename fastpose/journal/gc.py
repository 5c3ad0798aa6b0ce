"""``fastpose journal gc``: remove what deleted runs left, and prune the checkpoints of kept runs. Torch-free.

What it removes:

| runs                                  | removed                                                          |
| ------------------------------------- | ---------------------------------------------------------------- |
| deleted (``journal rm``)              | the run directory; with ``--purge`` then the run's rows          |
| kept, finished (completed, diverged)  | checkpoints the policy does not keep (``--keep best,last``: the  |
|                                       | periodic ``epochNNN.ckpt`` and leftover temporary files)         |

Runs that may still be resumed (crashed, interrupted, lost) keep every checkpoint, and a running run is never
touched: a deleted run whose process is alive again (here, or by its heartbeat on another machine) is left
alone, and naming one is refused. ``--older AGE`` limits gc to runs deleted (or, for pruning, ended) at least
AGE ago. A policy under which a finished run would lose every name of its best checkpoint is refused before
anything is written (``PolicyError``).

Crash safety, the order of every removal (a ``kill -9`` may land between any two steps):

1. **mark**: one transaction writes a ``gc_removals`` row for each file or directory about to go
   (``done_at`` null), after locking the run's row and checking it is still what gc planned for;
2. **files**: the files are removed (a directory bottom-up, one file at a time);
3. **record**: one transaction sets ``done_at``;
4. **rows** (``--purge``): one transaction deletes the run's rows (cascading to every table that names it).

The invariant: *a file or directory the journal refers to (a run's directory, a kept run's checkpoints) is
missing only where a ``gc_removals`` row names it*. A row with ``done_at`` null may name a file partly or
wholly gone: a run in that state is deleted (hidden), or a finished run whose best checkpoint is never among
them. Every gc first finishes the rows an earlier one left (steps 2-4 again, each a no-op where done), so a
second gc completes what a killed one began; ``restore`` refuses a run with such rows, or with rows to purge.
``FASTPOSE_FAULT=kill@gc:POINT`` (``fastpose.faults.GC_POINTS``) kills gc after steps 1, the first file
of 2, 2 and 3, for the tests.

Files are removed only inside this journal home's ``runs/`` folder and never through a symbolic link; a run
whose directory is elsewhere, or on another machine (not here, recorded elsewhere), is left alone and said so.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from fastpose.errors import FastposeError
from fastpose.faults import on_gc

if TYPE_CHECKING:
    from fastpose.journal.records import RunRecord
    from fastpose.journal.store import JournalStore

KEEP_CHOICES = ("best", "last", "periodic", "all")
DEFAULT_KEEP = "best,last"
FINISHED = ("completed", "diverged")


class PolicyError(FastposeError):
    """A gc policy that would remove what must stay (every name of a finished run's best checkpoint)."""


@dataclass(frozen=True)
class Policy:
    keep: frozenset[str] = frozenset({"best", "last"})
    older: timedelta = timedelta(0)
    purge: bool = False


def parse_keep(text: str) -> frozenset[str]:
    """``--keep``: comma-separated kinds of checkpoint kept (``KEEP_CHOICES``)."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    bad = [t for t in items if t not in KEEP_CHOICES]
    if not items or bad:
        what = f"unknown {bad[0]!r}" if bad else "nothing to keep"
        raise FastposeError(f"--keep {text!r}: {what}; give a comma-separated list of {', '.join(KEEP_CHOICES)} "
                            f"(default {DEFAULT_KEEP})")
    return frozenset(items)


_AGE = re.compile(r"(\d{1,7})([dhms])")


def parse_age(text: str) -> timedelta:
    """``--older``: ``30d``, ``12h``, ``1d12h``, ``90m``, ``45s`` (or ``0``)."""
    raw = str(text).strip()
    if raw == "0":
        return timedelta(0)
    pos, total = 0, timedelta(0)
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    for m in _AGE.finditer(raw):
        if m.start() != pos:
            break
        total += timedelta(**{units[m.group(2)]: int(m.group(1))})
        pos = m.end()
    if not raw or pos != len(raw):
        raise FastposeError(f"--older {text!r}: use a duration such as 30d, 12h, 1d12h or 90m")
    return total


# ----------------------------------------------------------------------------- the plan
@dataclass
class Removal:
    """One run's files planned for removal (a run directory, or checkpoint files)."""

    run: RunRecord
    kind: str  # run_dir | checkpoint
    paths: list[Path]
    bytes: int
    purge: bool = False


@dataclass
class GcPlan:
    pending: list[dict[str, Any]] = field(default_factory=list)  # gc_removals rows an earlier gc left undone
    removals: list[Removal] = field(default_factory=list)
    purge_only: list[RunRecord] = field(default_factory=list)  # deleted runs with no files left: rows go
    skipped: list[tuple[RunRecord, str]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.removals) + sum(int(p["bytes"] or 0) for p in self.pending)

    @property
    def empty(self) -> bool:
        return not (self.pending or self.removals or self.purge_only)


def runs_root(home: Path | None = None) -> Path:
    """The real path of ``<home>/runs``: gc removes nothing outside it."""
    from fastpose.journal.db import journal_home

    return Path(os.path.realpath((home or journal_home()) / "runs"))


def alive(run: RunRecord, lost_after: float | None = None) -> str | None:
    """Why a run's process may still be alive (``None``: it is not): status running and not lost by
    ``mark_lost``'s rule (its process here, its heartbeat on another machine)."""
    from fastpose.journal.reader import lost_after_seconds, lost_reason

    if run.status != "running":
        return None
    if lost_reason(run, now=datetime.now(timezone.utc), lost_after=lost_after_seconds(lost_after),
                   host=socket.gethostname()) is not None:
        return None
    return f"running (process {run.pid} on {run.host})"


def run_dir_verdict(run: RunRecord, root: Path) -> tuple[str, str]:
    """``("remove", path)``, ``("gone", why)`` (nothing left to remove) or ``("skip", why)`` for a deleted run."""
    from fastpose.journal.reader import same_process_table

    if not run.run_dir:
        return "gone", "no run directory recorded"
    path = Path(run.run_dir)
    if not path.is_absolute():
        return "skip", f"its run directory {run.run_dir} is not an absolute path; left alone"
    if not os.path.realpath(path).startswith(str(root) + os.sep):
        return "skip", f"its run directory {run.run_dir} is outside {root}; left alone"
    if path.is_symlink():
        return "skip", f"its run directory {run.run_dir} is a symbolic link; left alone"
    if path.is_dir():
        return "remove", str(path)
    if path.exists():
        return "skip", f"{run.run_dir} is not a directory; left alone"
    if run.host and not same_process_table(run, socket.gethostname()):
        return "skip", f"its run directory is not here (the run was on {run.host}); run journal gc there"
    return "gone", "its run directory is gone already"


def prunable(run: RunRecord, keep: frozenset[str]) -> tuple[list[Path], list[str]]:
    """``(files to remove, kinds kept)`` of a finished run's ``checkpoints/`` under the policy ``keep``;
    PolicyError when every name of its best checkpoint would go."""
    from fastpose.journal.du import checkpoint_kind

    if "all" in keep or not run.run_dir:
        return [], []
    folder = Path(run.run_dir) / "checkpoints"
    if folder.is_symlink() or not folder.is_dir():
        return [], []
    try:
        entries = [p for p in sorted(folder.iterdir()) if not p.is_dir() or p.is_symlink()]
    except OSError:
        return [], []
    kinds = {p: checkpoint_kind(p.name) for p in entries}
    drop = [p for p in entries if kinds[p] not in keep]
    if not drop:
        return [], []
    best = [p for p in entries if kinds[p] == "best"]
    kept = {_inode(p) for p in entries if p not in drop}
    if best and not any(_inode(p) in kept for p in best):
        raise PolicyError(f"--keep {','.join(sorted(keep))} would remove the best checkpoint of run #{run.id} "
                          f"{run.label} ({best[0].name}, {run.status}); keep best, or journal rm the run")
    return drop, sorted(keep)


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def plan(store: JournalStore, policy: Policy, refs: list[str] | None = None, home: Path | None = None,
         now: datetime | None = None) -> GcPlan:
    """What gc would do now (nothing is written): the pending rows, the new removals, what it skips.

    ``refs``: only these runs (deleted or kept); a running one is refused (FastposeError).
    """
    from fastpose.journal.du import directory_use, files_use
    from fastpose.journal.removal import removed_files

    now = now or datetime.now(timezone.utc)
    root = runs_root(home)
    out = GcPlan()
    if refs:
        runs = {}
        for ref in refs:
            run = store.resolve(ref, deleted="all")
            why = alive(run)
            if why:
                raise FastposeError(f"run #{run.id} {run.label} is {why}; gc leaves running runs alone")
            runs[run.id] = run
        selected = sorted(runs.values(), key=lambda r: r.id)
    else:
        selected = None
    pending = store._fetch("SELECT id, run_id, kind, path, bytes, purge FROM gc_removals WHERE done_at IS NULL "
                           "ORDER BY id")
    if selected is not None:
        pending = [p for p in pending if p["run_id"] in {r.id for r in selected}]
    out.pending = [dict(p, purge=bool(p["purge"])) for p in pending]
    busy = {p["run_id"] for p in out.pending}

    deleted = [r for r in (selected if selected is not None else store._runs("", deleted="only"))
               if r.deleted_at is not None]
    removals = removed_files(store, [r.id for r in deleted])
    for run in deleted:
        if run.id in busy:
            continue  # an earlier gc's rows: finished first
        why = alive(run)
        if why:
            out.skipped.append((run, why))
            continue
        if now - run.deleted_at < policy.older:
            continue
        done_dir = any(r["kind"] == "run_dir" and r["done_at"] is not None for r in removals[run.id])
        verdict, detail = ("gone", "removed by an earlier gc") if done_dir else run_dir_verdict(run, root)
        if verdict == "skip":
            out.skipped.append((run, detail))
        elif verdict == "remove":
            use = directory_use(detail)
            out.removals.append(Removal(run, "run_dir", [Path(detail)], use.total, policy.purge))
        elif policy.purge:
            out.purge_only.append(run)

    kept = [r for r in (selected if selected is not None else store._runs(
        "r.status IN ('completed', 'diverged')")) if r.deleted_at is None and r.status in FINISHED]
    for run in kept:
        if run.id in busy or (run.ended_at is not None and now - run.ended_at < policy.older):
            continue
        files, _ = prunable(run, policy.keep)
        if not files:
            continue
        if not os.path.realpath(Path(run.run_dir)).startswith(str(root) + os.sep):  # type: ignore[arg-type]
            out.skipped.append((run, f"its run directory {run.run_dir} is outside {root}; checkpoints left alone"))
            continue
        out.removals.append(Removal(run, "checkpoint", files, files_use(files)))
    return out


# ----------------------------------------------------------------------------- doing it
@dataclass(frozen=True)
class GcEvent:
    """One thing gc did (or left alone), for the command to say: ``what`` is ``finished`` (an earlier gc's
    removal), ``skipped``, ``changed`` (the run changed while gc planned: left alone), ``run_dir``,
    ``checkpoints``, ``purged``."""

    what: str
    run_id: int
    label: str = ""
    detail: str = ""
    bytes: int = 0
    files: tuple[str, ...] = ()


@dataclass
class GcResult:
    events: list[GcEvent] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(e.bytes for e in self.events)

    def count(self, what: str) -> int:
        return sum(1 for e in self.events if e.what == what)


def collect(store: JournalStore, policy: Policy, refs: list[str] | None = None, home: Path | None = None,
            say: Callable[[GcEvent], None] = lambda event: None) -> GcResult:
    """Run gc: finish what an earlier one left, then remove and purge by ``policy`` (see the module docstring
    for the order and the invariant). ``say`` gets each event as it happens."""
    root = runs_root(home)
    the_plan = plan(store, policy, refs, home)  # first: a refused policy or run changes nothing
    store.mark_lost()  # what the plan already read from the process table and the heartbeats
    result = GcResult()

    def event(*args: Any, **kw: Any) -> None:
        e = GcEvent(*args, **kw)
        result.events.append(e)
        say(e)

    for row in the_plan.pending:
        event("finished", row["run_id"], detail=row["path"], bytes=_finish(store, row, root))
        if row["purge"] and row["kind"] == "run_dir" and _purge(store, row["run_id"]):
            event("purged", row["run_id"])
    for run, why in the_plan.skipped:
        event("skipped", run.id, run.label, why)
    for removal in the_plan.removals:
        run = removal.run
        ids = _mark(store, removal)
        if ids is None:
            event("changed", run.id, run.label, "restored, running again, or taken by another gc")
            continue
        on_gc("marked")
        _remove(removal)
        on_gc("removed")
        _record_done(store, ids)
        on_gc("done")
        if removal.kind == "run_dir":
            event("run_dir", run.id, run.label, str(removal.paths[0]), removal.bytes)
            if removal.purge and _purge(store, run.id):
                event("purged", run.id, run.label)
        else:
            event("checkpoints", run.id, run.label, bytes=removal.bytes, files=tuple(p.name for p in removal.paths))
    for run in the_plan.purge_only:
        if _purge(store, run.id):
            event("purged", run.id, run.label, "no files left")
    return result


def _mark(store: JournalStore, removal: Removal) -> list[int] | None:
    """Step 1: lock the run's row, check it is still what was planned, write its gc_removals rows."""
    import sqlalchemy as sa

    from fastpose.journal.models import GcRemoval, Run

    runs, table = Run.__table__, GcRemoval.__table__
    now = datetime.now(timezone.utc)
    run = removal.run
    deleted = removal.kind == "run_dir"

    def work(conn: Any) -> list[int] | None:
        # still deleted and not running again (a heartbeat since the plan), or still finished and kept
        state = (sa.and_(runs.c.deleted_at.isnot(None), runs.c.status != "running") if deleted
                 else sa.and_(runs.c.deleted_at.is_(None), runs.c.status.in_(FINISHED)))
        # An UPDATE that changes nothing takes the row's lock (PostgreSQL) and re-checks it once it has it.
        if not conn.execute(sa.update(runs).where(runs.c.id == run.id, state).values(status=runs.c.status)).rowcount:
            return None
        if conn.execute(sa.select(table.c.id).where(table.c.run_id == run.id, table.c.done_at.is_(None))).first():
            return None  # another gc is at it
        ids = []
        for i, path in enumerate(removal.paths):
            ids.append(conn.execute(sa.insert(table).values(
                run_id=run.id, kind=removal.kind, path=str(path), bytes=removal.bytes if i == 0 else 0,
                purge=removal.purge, planned_at=now)).inserted_primary_key[0])
        return ids

    return store._write(work)


def _remove(removal: Removal) -> None:
    """Step 2: the files go (a directory bottom-up, never through a link)."""
    first = [True]

    def gone_one() -> None:
        if first[0]:
            first[0] = False
            on_gc("removing")

    for path in removal.paths:
        if removal.kind == "run_dir":
            remove_tree(path, gone_one)
        else:
            _unlink(path)
            gone_one()


def _record_done(store: JournalStore, ids: list[int]) -> None:
    """Step 3."""
    import sqlalchemy as sa

    from fastpose.journal.models import GcRemoval

    table = GcRemoval.__table__
    now = datetime.now(timezone.utc)
    store._write(lambda conn: conn.execute(sa.update(table).where(table.c.id.in_(ids)).values(done_at=now)))


def _purge(store: JournalStore, run_id: int) -> bool:
    """Step 4: the run's rows, when it is still deleted and nothing of it is left undone."""
    import sqlalchemy as sa

    from fastpose.journal.models import GcRemoval, Run

    runs, table = Run.__table__, GcRemoval.__table__

    def work(conn: Any) -> bool:
        if not conn.execute(sa.update(runs).where(runs.c.id == run_id, runs.c.deleted_at.isnot(None),
                                                  runs.c.status != "running").values(status=runs.c.status)).rowcount:
            return False
        if conn.execute(sa.select(table.c.id).where(table.c.run_id == run_id, table.c.done_at.is_(None))).first():
            return False
        return bool(conn.execute(sa.delete(runs).where(runs.c.id == run_id)).rowcount)

    return store._write(work)


def _finish(store: JournalStore, row: dict[str, Any], root: Path) -> int:
    """Steps 2-3 again for a row an earlier gc left undone (each a no-op where it is done already)."""
    path = Path(row["path"])
    if not os.path.realpath(path).startswith(str(root) + os.sep) or path.is_symlink():
        raise FastposeError(f"gc_removals row {row['id']} names {path}, outside {root} or a link: not removed; "
                            "run gc from the journal home that made it")
    if row["kind"] == "run_dir":
        remove_tree(path, lambda: None)
    else:
        _unlink(path)
    on_gc("removed")
    _record_done(store, [row["id"]])
    on_gc("done")
    return int(row["bytes"] or 0)


def remove_tree(path: Path, after_each: Callable[[], None]) -> None:
    """Remove the directory ``path`` bottom-up, one entry at a time, never following a link (a link is
    removed as itself); a path already gone is done. ``after_each`` is called after every file removed."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        _unlink(path)
        after_each()
        return
    for folder, dirs, files in os.walk(path, topdown=False):
        for name in files:
            _unlink(Path(folder) / name)
            after_each()
        for name in dirs:
            full = os.path.join(folder, name)
            if os.path.islink(full):
                _unlink(Path(full))
            else:
                try:
                    os.rmdir(full)
                except FileNotFoundError:
                    pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
