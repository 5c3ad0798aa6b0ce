"""A run as every screen's JSON shows it (``journal --json``, ``compare --json``, the web view's ``/api``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from fastpose.errors import FastposeError
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


def runs_csv(runs: list[RunRecord], summaries: dict[int, dict[str, MetricSummary]], metrics: list[str],
             extra: dict[str, dict[int, Any]] | None = None) -> str:
    """One CSV row per run: id, label, name, status, the ``extra`` columns (column -> run id -> value), every
    config key (``config.*``), then the final and best value of each of ``metrics`` (empty where the run has
    none). ``compare --csv``, of runs or of groups."""
    import csv
    import io

    from fastpose.config import flatten

    extra = extra or {}
    flat = {r.id: flatten(r.config or {}) for r in runs}
    config_keys = sorted({k for f in flat.values() for k in f})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run_id", "label", "name", "status", *extra, *(f"config.{k}" for k in config_keys),
                     *(f"final.{m}" for m in metrics), *(f"best.{m}" for m in metrics)])
    for run in runs:
        s = summaries.get(run.id, {})
        writer.writerow([run.id, run.label, run.name, run.status, *(_csv_cell(col.get(run.id)) for col in extra.values()),
                         *(_csv_cell(flat[run.id].get(k)) for k in config_keys),
                         *(_csv_cell(s[m].final if m in s else None) for m in metrics),
                         *(_csv_cell(s[m].best if m in s else None) for m in metrics)])
    return buf.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else str(value)
    return value


def refuse_repeats(refs: list[str], runs: list[Any]) -> None:
    """A comparison of a run with itself tells nothing: two references to one run are refused, naming both."""
    from fastpose.text import visible

    seen: dict[int, str] = {}
    for ref, run in zip(refs, runs):
        if run.id in seen:
            first, again = visible(seen[run.id], newlines=False), visible(ref, newlines=False)
            named = f"{first!r} and {again!r} both name" if first != again else f"{first!r} is given twice:"
            raise FastposeError(f"{named} run #{run.id} ({visible(run.label, newlines=False)}); compare needs "
                                "different runs")
        seen[run.id] = ref


def _json_num(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN
