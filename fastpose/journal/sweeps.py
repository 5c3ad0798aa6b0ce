"""Sweeps in the journal: the sweep rows, which run is which cell, and each cell's state. Torch-free.

A sweep (``fastpose sweep FILE.toml``) is a grid of cells; a cell is one combination of axis values,
e.g. ``{"loss.name": "mse", "train.seed": 0}``, stored as canonical JSON (sorted keys). Its group is the
same without the seed axes (``SEED_KEYS``): the runs a group comparison pools. A cell may hold several runs:
an attempt that crashed, was interrupted or lost, and the resumed run that continued it. Its state is
``completed`` if any of them completed, else the state of its newest run, else ``pending``.

A process that runs a cell first claims it (``claim_cell``, table ``sweep_claims``): one row per cell, so of
two sweeps (or cluster jobs) that reach a cell at once, exactly one inserts the row and runs it; the other
waits or skips. The row names the holder's process as ``runs`` does, and ``holder_gone`` judges it as
``mark_lost`` judges a run (the process table on the holder's machine, else the heartbeat), so a claim whose
holder was killed is taken over by the next process that wants the cell.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from fastpose.errors import FastposeError
from fastpose.journal.reader import deleted_clause
from fastpose.journal.records import json_value, to_utc

if TYPE_CHECKING:
    from fastpose.journal.reader import JournalReader
    from fastpose.journal.store import JournalStore

SEED_KEYS = ("train.seed", "data.seed")
# The spec fields that define the cells: a sweep id re-used with other values here is refused.
IDENTITY_FIELDS = ("name", "base", "axes", "tune")
_FIELD_NAMES = {"tune": "[tune] table"}


class UnknownSweepError(FastposeError):
    """A sweep reference matched no sweep."""


@dataclass(frozen=True)
class SweepRecord:
    id: int
    name: str
    spec: dict[str, Any]
    source: str | None
    created_at: datetime


@dataclass(frozen=True)
class CellRun:
    """One run of one cell (``status`` is the run's)."""

    run_id: int
    cell: str
    group_key: str
    status: str
    name: str
    label: str
    run_dir: str | None
    epoch: int | None
    started_at: datetime


# ----------------------------------------------------------------------------- keys
def cell_key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)


def group_key(values: dict[str, Any] | str) -> str:
    if isinstance(values, str):
        values = json.loads(values)
    return cell_key({k: v for k, v in values.items() if k not in SEED_KEYS})


def describe(key: str) -> str:
    """``{"loss.name": "mse"}`` -> ``loss.name=mse`` (``all`` for the empty group)."""
    values = json.loads(key)
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "all"


# ----------------------------------------------------------------------------- reads
def _record(row: dict[str, Any]) -> SweepRecord:
    return SweepRecord(row["id"], row["name"], json_value(row["spec"]) or {}, row["source"], to_utc(row["created_at"]))


def list_sweeps(reader: JournalReader) -> list[SweepRecord]:
    return [_record(r) for r in reader._fetch("SELECT * FROM sweeps ORDER BY created_at DESC, id DESC")]


def find_sweep(reader: JournalReader, ref: str) -> SweepRecord | None:
    rows = reader._fetch("SELECT * FROM sweeps WHERE name = :ref", {"ref": str(ref)})
    if not rows and str(ref).isdigit():
        rows = reader._fetch("SELECT * FROM sweeps WHERE id = :id", {"id": int(ref)})
    return _record(rows[0]) if rows else None


def get_sweep(reader: JournalReader, ref: str) -> SweepRecord:
    """A sweep by its id text (or numeric row id); else one line naming the sweeps there are."""
    found = find_sweep(reader, ref)
    if found is not None:
        return found
    names = [s.name for s in list_sweeps(reader)]
    import difflib

    close = difflib.get_close_matches(str(ref), names, n=5, cutoff=0.4)
    hint = f"; closest: {', '.join(close)}" if close else ("; the journal has no sweeps" if not names else "")
    raise UnknownSweepError(f"no sweep {str(ref)!r}{hint}")


def cell_runs(reader: JournalReader, sweep_id: int) -> list[CellRun]:
    """Every run of the sweep, oldest first; runs deleted by ``journal rm`` are not there (a deleted cell is
    one not run yet: the sweep runs it again)."""
    rows = reader._fetch(
        "SELECT s.run_id, s.cell, s.group_key, r.status, r.name, r.label, r.run_dir, r.epoch, r.started_at "
        f"FROM sweep_runs s JOIN runs r ON r.id = s.run_id WHERE s.sweep_id = :id AND {deleted_clause('hide')} "
        "ORDER BY r.started_at, r.id",
        {"id": int(sweep_id)},
    )
    return [
        CellRun(r["run_id"], r["cell"], r["group_key"], r["status"], r["name"], r["label"], r["run_dir"], r["epoch"],
                to_utc(r["started_at"]))
        for r in rows
    ]


def cell_states(runs: list[CellRun]) -> dict[str, tuple[str, CellRun]]:
    """``{cell: (state, the run that decides it)}``: the completed run if any, else the newest one."""
    out: dict[str, tuple[str, CellRun]] = {}
    for run in runs:  # oldest first: the newest overwrites, a completed one stays
        if run.cell in out and out[run.cell][0] == "completed":
            continue
        out[run.cell] = (run.status, run)
    return out


def sweep_of_run(reader: JournalReader, run_id: int) -> tuple[int, str, str] | None:
    """``(sweep_id, cell, group_key)`` of a run, or None when it is in no sweep."""
    rows = reader._fetch("SELECT sweep_id, cell, group_key FROM sweep_runs WHERE run_id = :id", {"id": int(run_id)})
    return (rows[0]["sweep_id"], rows[0]["cell"], rows[0]["group_key"]) if rows else None


# ----------------------------------------------------------------------------- writes
def open_sweep(store: JournalStore, name: str, spec: dict[str, Any], source: str | None) -> SweepRecord:
    """The sweep ``name``, created with ``spec`` on first use; a later use must define the same cells."""
    import sqlalchemy as sa

    from fastpose.journal.models import Sweep

    table = Sweep.__table__

    def work(conn: Any) -> None:
        if conn.execute(sa.select(table.c.id).where(table.c.name == name)).first() is None:
            conn.execute(sa.insert(table).values(name=name, spec=spec, source=source,
                                                 created_at=datetime.now(timezone.utc)))

    existing = find_sweep(store, name)
    if existing is None:
        try:
            store._write(work)
        except sa.exc.IntegrityError:  # created by another process at the same moment
            pass
        existing = get_sweep(store, name)
    differs = [_FIELD_NAMES.get(f, f) for f in IDENTITY_FIELDS if _normal(existing.spec.get(f)) != _normal(spec.get(f))]
    if differs:
        raise FastposeError(
            f"sweep {name!r} already exists in the journal with another {' and '.join(differs)}; "
            "give this sweep another id ([sweep] id = \"...\") or restore the file it was started with"
        )
    return existing


def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def attach(store: JournalStore, run_id: int, sweep_id: int, cell: dict[str, Any] | str) -> None:
    """Record run ``run_id`` as (an attempt at) ``cell`` of the sweep, and tag it with the sweep's id."""
    import sqlalchemy as sa

    from fastpose.journal.models import SweepRun
    from fastpose.journal.tags import add_tags

    key = cell if isinstance(cell, str) else cell_key(cell)
    sweep = by_id(store, sweep_id)
    table = SweepRun.__table__

    def work(conn: Any) -> None:
        store._require(conn, run_id)
        conn.execute(sa.delete(table).where(table.c.run_id == run_id))
        conn.execute(sa.insert(table).values(run_id=run_id, sweep_id=sweep.id, cell=key, group_key=group_key(key)))

    store._write(work)
    add_tags(store, run_id, [sweep.name])


def inherit(store: JournalStore, parent_id: int, child_id: int) -> None:
    """A resumed run continues its parent: the same sweep cell (if any) and the same tags."""
    from fastpose.journal.tags import add_tags, run_tags

    membership = sweep_of_run(store, parent_id)
    if membership is not None:
        attach(store, child_id, membership[0], membership[1])
    add_tags(store, child_id, run_tags(store, [parent_id])[parent_id])


def by_id(reader: JournalReader, sweep_id: int) -> SweepRecord:
    rows = reader._fetch("SELECT * FROM sweeps WHERE id = :id", {"id": int(sweep_id)})
    if not rows:
        raise UnknownSweepError(f"no sweep with row id {sweep_id}")
    return _record(rows[0])


# ----------------------------------------------------------------------------- claims (revision 0008)
@dataclass(frozen=True)
class Claim:
    """Who runs a cell now (a ``sweep_claims`` row). The process fields carry ``RunRecord``'s names, so
    ``reader.lost_reason`` judges a claim's holder exactly as it judges a run's process."""

    sweep_id: int
    cell: str
    token: str
    holder: str
    job: str | None
    pid: int | None
    host: str | None
    proc_start: int | None
    machine_id: str | None
    pid_namespace: int | None
    claimed_at: datetime
    heartbeat_at: datetime

    @property
    def started_at(self) -> datetime:  # what lost_reason falls back on without a heartbeat
        return self.claimed_at


_CLAIM_COLUMNS = ("sweep_id", "cell", "token", "holder", "job", "pid", "host", "proc_start", "machine_id",
                  "pid_namespace", "claimed_at", "heartbeat_at")


def _claim(row: dict[str, Any]) -> Claim:
    data = {k: row[k] for k in _CLAIM_COLUMNS}
    data["claimed_at"], data["heartbeat_at"] = to_utc(row["claimed_at"]), to_utc(row["heartbeat_at"])
    return Claim(**data)


def cell_claims(reader: JournalReader, sweep_id: int) -> dict[str, Claim]:
    """``{cell: claim}`` for the sweep's claimed cells (live or not: see ``holder_gone``)."""
    rows = reader._fetch("SELECT * FROM sweep_claims WHERE sweep_id = :id", {"id": int(sweep_id)})
    return {row["cell"]: _claim(row) for row in rows}


def holder_gone(claim: Claim, lost_after: float | None = None) -> str | None:
    """Why ``claim``'s holder holds it no more (its process is gone, or, on another machine, no heartbeat for
    ``lost_after`` seconds, default ``$FASTPOSE_LOST_AFTER``), or None while it may be alive."""
    from fastpose.journal.reader import lost_after_seconds, lost_reason

    return lost_reason(claim, now=datetime.now(timezone.utc), lost_after=lost_after_seconds(lost_after),
                       host=socket.gethostname())


def new_claim(sweep_id: int, cell: str, job: str | None = None) -> Claim:
    """A claim for this process (not yet written): its pid, host, start time, machine and PID namespace."""
    from fastpose.journal.reader import machine_id, pid_namespace, process_started_ms

    pid, host, now = os.getpid(), socket.gethostname(), datetime.now(timezone.utc)
    holder = f"job {job} (pid {pid} on {host})" if job else f"sweep pid {pid} on {host}"
    return Claim(int(sweep_id), cell, uuid.uuid4().hex, holder[:255], job, pid, host,
                 process_started_ms(pid) or None, machine_id(), pid_namespace(), now, now)


def claim_cell(store: JournalStore, sweep_id: int, cell: str, *, job: str | None = None) -> tuple[Claim, bool]:
    """Claim ``cell`` of the sweep for this process: ``(our claim, True)``, or ``(the holder's, False)`` while a
    live process holds it. The insert decides: the primary key (sweep_id, cell) admits one row, so of two
    processes claiming at once one wins and the other gets an IntegrityError, then reads the winner. A claim
    whose holder is gone, or that the same ``job`` made before it was requeued, is replaced in the same
    transaction (the delete names its token, so two processes cannot both replace it)."""
    import sqlalchemy as sa

    from fastpose.journal.models import SweepClaim

    table = SweepClaim.__table__
    mine = new_claim(sweep_id, cell, job)
    where = (table.c.sweep_id == mine.sweep_id, table.c.cell == cell)

    def work(conn: Any) -> Claim:
        row = conn.execute(sa.select(table).where(*where)).mappings().first()
        if row is not None:
            held = _claim(dict(row))
            if not (job is not None and held.job == job) and holder_gone(held) is None:
                return held
            conn.execute(sa.delete(table).where(*where, table.c.token == held.token))
        conn.execute(sa.insert(table).values({k: getattr(mine, k) for k in _CLAIM_COLUMNS}))
        return mine

    for _ in range(5):
        try:
            got = store._write(work)
        except sa.exc.IntegrityError:  # another process inserted between our read and our insert: read it
            continue
        return got, got.token == mine.token
    raise FastposeError(f"could not claim cell {cell} of sweep {sweep_id}: it changed hands five times in a row")


def renew_claims(store: JournalStore, tokens: list[str]) -> int:
    """The holder is alive: refresh its claims' heartbeat (what other machines judge it by). Returns how many
    of ``tokens`` are still held."""
    return _claim_write(store, tokens, renew=True)


def release_claims(store: JournalStore, tokens: list[str]) -> int:
    """Give the cells back (their runs have ended, or were never started)."""
    return _claim_write(store, tokens, renew=False)


def _claim_write(store: JournalStore, tokens: list[str], *, renew: bool) -> int:
    import sqlalchemy as sa

    from fastpose.journal.models import SweepClaim

    if not tokens:
        return 0
    table = SweepClaim.__table__
    mine = table.c.token.in_(list(tokens))
    stmt = sa.update(table).where(mine).values(heartbeat_at=datetime.now(timezone.utc)) if renew else \
        sa.delete(table).where(mine)
    return int(store._write(lambda conn: conn.execute(stmt).rowcount))


def run_sweeps(reader: JournalReader) -> dict[int, str]:
    """``{run_id: sweep id}`` of every run filed in a sweep."""
    rows = reader._fetch("SELECT s.run_id, w.name FROM sweep_runs s JOIN sweeps w ON w.id = s.sweep_id")
    return {r["run_id"]: r["name"] for r in rows}
