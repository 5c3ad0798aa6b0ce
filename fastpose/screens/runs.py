"""A run as every screen's JSON shows it (``journal --json``, ``compare --json``, the web view's ``/api``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from fastpose.journal.records import MetricSummary, NoteRecord, RunRecord
from fastpose.text import finite_json

if TYPE_CHECKING:
    from fastpose.journal.reader import JournalReader


def run_to_json(
    run: RunRecord,
    store: JournalReader | None = None,
    *,
    summaries: dict[str, MetricSummary] | None = None,
    notes: list[NoteRecord] | None = None,
) -> dict[str, Any]:
    """The ``--json`` run object (``journal --json``, ``compare --json``). Pass ``store`` or both extras."""
    if summaries is None:
        summaries = store.metric_summaries([run.id])[run.id] if store else {}
    if notes is None:
        notes = store.notes(run.id) if store else []
    iso = lambda d: None if d is None else d.isoformat()  # noqa: E731
    return {
        "id": run.id,
        "name": run.name,
        "label": run.label,
        "status": run.status,
        "started": iso(run.started_at),
        "ended": iso(run.ended_at),
        "duration_s": run.duration_s,
        "git_commit": run.git_commit,
        "git_dirty": run.git_dirty,
        "final_metrics": {n: _json_num(s.final) for n, s in summaries.items()},
        "best_metrics": {n: _json_num(s.best) for n, s in summaries.items()},
        "notes": [n.text for n in notes],
        "epoch": run.epoch,
        "step": run.step,
        "parent_id": run.parent_id,
        "host": run.host,
        "pid": run.pid,
        "run_dir": run.run_dir,
        "checkpoint": run.checkpoint,
        "error_type": run.error_type,
        "error_message": run.error_message,
        "config": finite_json(run.config),
        # threads, device, precision, backends, versions (fastpose/training/machine.py); null: not recorded
        "environment": None if run.environment is None else finite_json(run.environment),
    }


def _json_num(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN
