"""``fastpose journal rm`` and ``journal restore``: runs deleted from the journal's listings, and back. Torch-free.

``rm`` only marks runs deleted (``runs.deleted_at``): every listing, ``compare`` and every run reference
stop seeing them (``fastpose.journal.reader.deleted_clause``), nothing on disk is touched, and ``restore``
brings them back. ``journal gc`` (``fastpose.journal.gc``) removes what they left.

| selection                | runs                                                              |
| ------------------------ | ----------------------------------------------------------------- |
| `RUN...`                 | each reference (id, label, label prefix, NAME): all must resolve    |
| `--sweep ID`             | the runs of that sweep                                             |
| `--where KEY=VALUE`      | runs whose config has it (repeatable: all of them)                 |
| `--status S`             | runs with that status                                              |
| `--before DATE`          | runs started before that day (YYYY-MM-DD or Nd, as `--since`)      |

The filters combine (all must hold) and cannot be mixed with references. A running run (its process
alive, here or, by its heartbeat, on another machine) is refused, and so is the whole selection with it:
nothing is marked unless every run can be.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from fastpose.errors import FastposeError

if TYPE_CHECKING:
    from fastpose.journal.reader import JournalReader
    from fastpose.journal.records import RunRecord
    from fastpose.journal.store import JournalStore


@dataclass(frozen=True)
class Selection:
    """What ``journal rm`` was asked to delete (checked by ``check_selection`` before the journal is read)."""

    refs: tuple[str, ...] = ()
    sweep: str | None = None
    where: tuple[tuple[str, Any], ...] = ()
    status: str | None = None
    before: datetime | None = None

    @property
    def filtered(self) -> bool:
        return self.sweep is not None or bool(self.where) or self.status is not None or self.before is not None

    def describe(self) -> str:
        parts = [f"--sweep {self.sweep}"] if self.sweep is not None else []
        parts += [f"--where {k}={v}" for k, v in self.where]
        parts += [f"--status {self.status}"] if self.status else []
        parts += [f"--before {self.before.astimezone():%Y-%m-%d}"] if self.before else []
        return " ".join(parts)


def check_selection(refs: list[str], *, sweep: str | None = None, where: list[str] | None = None,
                    status: str | None = None, before: str | None = None) -> Selection:
    """The runs ``rm`` is asked for, checked: references or filters (not both, not neither), each filter valid."""
    from fastpose.journal.reader import STATUSES, parse_since
    from fastpose.journal.tags import parse_where

    if status is not None and status not in STATUSES:
        raise FastposeError(f"--status {status!r}: choose one of {', '.join(STATUSES)}")
    conditions = tuple(parse_where(where or ()))
    try:
        before_dt = parse_since(before) if before is not None else None
    except FastposeError:
        raise FastposeError(f"--before {before!r}: use YYYY-MM-DD or Nd (e.g. 30d) for a day after the year 1") from None
    selection = Selection(tuple(refs), sweep, conditions, status, before_dt)
    if refs and selection.filtered:
        raise FastposeError("give runs or selections (--sweep, --where, --status, --before), not both")
    if not refs and not selection.filtered:
        raise FastposeError("name the runs to delete (RUN...) or select them (--sweep, --where, --status, --before)")
    return selection


def select_runs(reader: JournalReader, selection: Selection) -> list[RunRecord]:
    """The live runs the selection names, oldest first; unknown references raise (one line)."""
    if selection.refs:
        runs: dict[int, RunRecord] = {}
        for ref in selection.refs:
            run = reader.resolve(ref)
            runs.setdefault(run.id, run)
        return sorted(runs.values(), key=lambda r: r.id)
    from fastpose.journal.tags import select_runs as select

    sweep_id = None
    if selection.sweep is not None:
        from fastpose.journal.sweeps import get_sweep

        sweep_id = get_sweep(reader, selection.sweep).id
    runs = select(reader, status=selection.status, sweep_id=sweep_id, where=list(selection.where))
    if selection.before is not None:
        runs = [r for r in runs if r.started_at < selection.before]
    return sorted(runs, key=lambda r: r.id)


def refuse_running(runs: list[RunRecord]) -> None:
    """A running run cannot be deleted (nor can a selection holding one); call after marking lost runs."""
    running = [r for r in runs if r.status == "running"]
    if running:
        run = running[0]
        more = f" (and {len(running) - 1} more running)" if len(running) > 1 else ""
        raise FastposeError(f"run #{run.id} {run.label} is running (process {run.pid} on {run.host}){more}; "
                            "stop it first, nothing was deleted")


def mark_deleted(store: JournalStore, runs: list[RunRecord], at: datetime | None = None) -> datetime:
    """Mark ``runs`` deleted in one transaction; refused as a whole (nothing marked) if any is running or
    already deleted by now (another process got there first)."""
    import sqlalchemy as sa

    from fastpose.journal.models import Run

    table = Run.__table__
    now = at or datetime.now(timezone.utc)
    ids = [r.id for r in runs]

    def work(conn: Any) -> None:
        rows = conn.execute(sa.select(table.c.id, table.c.status, table.c.deleted_at, table.c.label)
                            .where(table.c.id.in_(ids)).with_for_update()).all()
        found = {row.id: row for row in rows}
        for run_id in ids:
            row = found.get(run_id)
            if row is None:
                raise FastposeError(f"run #{run_id} is no longer in the journal; nothing was deleted")
            if row.deleted_at is not None:
                raise FastposeError(f"run #{run_id} {row.label} was deleted meanwhile; nothing was deleted")
            if row.status == "running":
                raise FastposeError(f"run #{run_id} {row.label} is running again; nothing was deleted")
        conn.execute(sa.update(table).where(table.c.id.in_(ids)).values(deleted_at=now))

    store._write(work)
    return now


def restore(store: JournalStore, runs: list[RunRecord]) -> None:
    """Bring deleted runs back, in one transaction. Refused (nothing restored) for a run whose files a
    ``journal gc`` is removing now or whose rows it is to purge: run ``journal gc`` to finish first."""
    import sqlalchemy as sa

    from fastpose.journal.models import GcRemoval, Run

    table, removals = Run.__table__, GcRemoval.__table__
    ids = [r.id for r in runs]

    def work(conn: Any) -> None:
        # Lock the rows first (PostgreSQL: a gc planning a removal holds them too), then look at gc's rows.
        rows = {row.id: row for row in conn.execute(
            sa.select(table.c.id, table.c.deleted_at, table.c.label).where(table.c.id.in_(ids)).with_for_update())}
        busy = conn.execute(sa.select(removals.c.run_id).where(
            removals.c.run_id.in_(ids), sa.or_(removals.c.done_at.is_(None), removals.c.purge))).first()
        if busy is not None:
            label = rows[busy.run_id].label if busy.run_id in rows else ""
            raise FastposeError(f"run #{busy.run_id} {label}: journal gc is removing it (its files, or its rows "
                                "with --purge); run journal gc to finish, nothing was restored")
        for run_id in ids:
            if run_id not in rows or rows[run_id].deleted_at is None:
                raise FastposeError(f"run #{run_id} is not deleted (any more); nothing was restored")
        conn.execute(sa.update(table).where(table.c.id.in_(ids)).values(deleted_at=None))

    store._write(work)


def removed_files(reader: JournalReader, run_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """``{run_id: [gc_removals row, ...]}``: what ``journal gc`` removed (or is removing) of each run."""
    from fastpose.journal.reader import _chunks, _in_params
    from fastpose.journal.records import to_utc

    out: dict[int, list[dict[str, Any]]] = {int(i): [] for i in run_ids}
    for chunk in _chunks(list(out), 500):
        marks, params = _in_params(chunk)
        for row in reader._fetch("SELECT id, run_id, kind, path, bytes, purge, planned_at, done_at FROM gc_removals "
                                 f"WHERE run_id IN ({marks}) ORDER BY id", params):
            row = dict(row)
            row["planned_at"], row["done_at"] = to_utc(row["planned_at"]), to_utc(row["done_at"])
            row["purge"] = bool(row["purge"])
            out[row["run_id"]].append(row)
    return out
