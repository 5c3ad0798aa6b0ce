"""Copy a run whole from one journal into another (``fastpose reproduce``: the rebuilt code trains into a
journal of its own, whose schema may be older, and the run is then filed here). Torch-free.

One write transaction: the run's row (a new id; its label, run directory and ``reproduces_id`` as given),
its git and fastpose-code states, the contents of its untracked files, its whole metric history (the
final/best summaries rebuilt from it by the store's own rule) and its notes. Tags, sweep cells and
evaluations are not copied: the copy is a new run, not a cell of the original's sweep.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from fastpose.journal.records import RUN_COLUMNS

if TYPE_CHECKING:
    from fastpose.journal.reader import JournalReader
    from fastpose.journal.records import RunRecord
    from fastpose.journal.store import JournalStore


def free_label(reader: JournalReader, label: str, taken_dir: Any = None) -> str:
    """``label``, or ``label-2``, ``-3``, ... (the same-minute suffix of run labels): the first no run of
    ``reader`` has and, with ``taken_dir(label) -> bool``, whose run directory is free."""
    candidate, n = label, 1
    while reader._fetch("SELECT 1 AS x FROM runs WHERE label = :l", {"l": candidate}) or (
            taken_dir is not None and taken_dir(candidate)):
        n += 1
        candidate = f"{label}-{n}"
    return candidate


def import_run(store: JournalStore, source: JournalReader, run_id: int, *, label: str, run_dir: str | None,
               reproduces_id: int | None = None) -> RunRecord:
    """File run ``run_id`` of ``source`` into ``store`` as a new run; returns it."""
    import sqlalchemy as sa

    from fastpose.journal.db import check_run_label
    from fastpose.journal.models import GitStateRow, Note, Run, SourceStateRow
    from fastpose.journal.store import _insert_untracked, _storable, append_metrics

    check_run_label(label)
    run = source.get_run(run_id)
    git, code = source.git_state(run_id), source.source_state(run_id)
    if git is not None:
        git = dataclasses.replace(git, files=tuple(source.untracked_files(run_id, "cwd")))
    if code is not None:
        code = dataclasses.replace(code, files=tuple(source.untracked_files(run_id, "source")))
    points = source.metric_history(run_id)
    notes = source.notes(run_id)
    row = {k: v for k, v in dataclasses.asdict(run).items() if k in RUN_COLUMNS and k != "id"}
    row.update(label=label, run_dir=run_dir, parent_id=None, reproduces_id=reproduces_id, deleted_at=None)
    metric_rows = [{"name": p.name, "epoch": p.epoch, "step": p.step, "value": _storable(p.value),
                    "logged_at": p.time} for p in points]
    updated = max((p.time for p in points if p.time is not None), default=run.heartbeat_at or run.started_at)

    def work(conn: Any) -> int:
        if reproduces_id is not None:
            store._require(conn, reproduces_id)
        new_id = conn.execute(sa.insert(Run.__table__).values(**row)).inserted_primary_key[0]
        if git is not None:
            conn.execute(sa.insert(GitStateRow.__table__).values(
                run_id=new_id, is_repo=git.is_repo, commit_sha=git.commit, branch=git.branch, dirty=git.dirty,
                diff=git.diff, untracked=list(git.untracked), message=git.message, error=git.error))
            _insert_untracked(conn, new_id, "cwd", git)
        if code is not None:
            conn.execute(sa.insert(SourceStateRow.__table__).values(
                run_id=new_id, fastpose_version=code.version, location=code.location, is_repo=code.is_repo,
                same_as_cwd=code.same_as_cwd, commit_sha=code.commit, branch=code.branch, dirty=code.dirty,
                diff=code.diff, untracked=list(code.untracked), message=code.message, error=code.error))
            _insert_untracked(conn, new_id, "source", code)
        append_metrics(conn, new_id, [dict(r, run_id=new_id) for r in metric_rows], updated)
        for note in notes:
            conn.execute(sa.insert(Note.__table__).values(run_id=new_id, text=note.text, created_at=note.created_at))
        return new_id

    return store.get_run(store._write(work))
