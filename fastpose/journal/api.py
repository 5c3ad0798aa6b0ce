"""Runs as pandas DataFrames, for notebooks: a small read-only API over the journal. Torch-free.

    from fastpose.journal import api

    df = api.runs(sweep="loss_study", metrics=["val/10deg", "val/rot_err_median"])
    df.groupby("config.loss.name")["final.val/10deg"].agg(["mean", "std", "count"])
    h = api.history(df.id.iloc[0])

| function                          | returns                                                                    |
| --------------------------------- | -------------------------------------------------------------------------- |
| ``runs(where=, sweep=, metrics=, status=, name=, tags=, since=, deleted=, url=)`` | one row per run, newest first: ``id``, ``name``, ``label``, ``status``, ``started``, ``ended``, ``duration_s``, ``epoch``, ``parent_id``, ``reproduces_id``, ``sweep``, ``cell``, ``tags``, ``git_commit``, ``git_dirty``, ``run_dir``, ``config.<key>`` (every config key, dotted), ``final.<metric>``, ``best.<metric>`` |
| ``history(run, metrics=, url=)``   | one row per logged value, in logging order: ``run_id``, ``name``, ``epoch``, ``step``, ``value`` (NaN where none was defined), ``time`` |

``where``: ``{"loss.name": "qloss"}`` or ``["loss.name=qloss"]`` (the keys and values of ``journal --where``);
``sweep``: a sweep id; ``metrics``: the metric columns wanted (default: every metric the runs logged; a name no
run logged is a column of NaN); ``deleted``: ``"hide"`` (default), ``"only"`` or ``"all"`` for runs deleted
by ``journal rm``; ``url``: a journal URL (default ``$FASTPOSE_JOURNAL_URL``, else the home's SQLite file).

Read-only: nothing is written, not even a run marked lost, and no journal is created or upgraded (an older
journal is refused with the command that upgrades it). Times are timezone-aware (UTC). pandas comes with the
``notebook`` extra (``pip install 'fastpose[notebook]'``); without it every function raises ``MissingExtra``
(an ``ImportError``) with that one line.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from fastpose.errors import FastposeError

if TYPE_CHECKING:
    import pandas as pd

    from fastpose.journal.reader import JournalReader

__all__ = ["runs", "history", "MissingExtra"]


class MissingExtra(FastposeError, ImportError):
    """pandas is not installed: ``pip install 'fastpose[notebook]'``."""


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise MissingExtra("fastpose.journal.api needs pandas: pip install 'fastpose[notebook]'") from None
    return pandas


@contextmanager
def _reader(url: str | None) -> Iterator[JournalReader]:
    from fastpose.journal.access import open_readonly

    reader = open_readonly(url)
    try:
        yield reader
    finally:
        reader.close()


def _conditions(where: Mapping[str, Any] | Iterable[str] | None) -> list[tuple[str, Any]]:
    from fastpose.journal.tags import parse_where

    if where is None:
        return []
    if isinstance(where, Mapping):
        parse_where([f"{k}=x" for k in where])  # the same key check as journal --where
        return [(k, v) for k, v in where.items()]
    if isinstance(where, str):
        return parse_where([where])
    return parse_where(list(where))


def runs(
    where: Mapping[str, Any] | Iterable[str] | None = None,
    sweep: str | None = None,
    metrics: Iterable[str] | None = None,
    *,
    status: str | None = None,
    name: str | None = None,
    tags: Iterable[str] = (),
    since: str | datetime | None = None,
    deleted: str = "hide",
    url: str | None = None,
) -> pd.DataFrame:
    """One row per run (newest first) with its config and its final and best metrics; see the module docstring."""
    pd = _pandas()
    from fastpose.config import flatten
    from fastpose.journal.reader import DELETED_CHOICES, STATUSES, parse_since
    from fastpose.journal.sweeps import get_sweep, run_sweeps
    from fastpose.journal.tags import run_tags, select_runs, validate_tag

    conditions = _conditions(where)
    if status is not None and status not in STATUSES:
        raise FastposeError(f"status {status!r}: choose one of {', '.join(STATUSES)}")
    if deleted not in DELETED_CHOICES:
        raise FastposeError(f"deleted {deleted!r}: choose one of {', '.join(DELETED_CHOICES)}")
    wanted_tags = [validate_tag(t) for t in ([tags] if isinstance(tags, str) else tags)]
    since_dt = parse_since(since) if isinstance(since, str) else since
    wanted = None if metrics is None else list(dict.fromkeys([metrics] if isinstance(metrics, str) else metrics))
    with _reader(url) as reader:
        sweep_id = get_sweep(reader, sweep).id if sweep is not None else None
        records = select_runs(reader, since=since_dt, status=status, name=name, tags=wanted_tags,
                              sweep_id=sweep_id, where=conditions, deleted=deleted)
        ids = [r.id for r in records]
        summaries = reader.metric_summaries(ids)
        all_tags = run_tags(reader, ids)
        sweeps = run_sweeps(reader)
        cells = _cells(reader, ids)
    names = wanted if wanted is not None else sorted({n for s in summaries.values() for n in s})
    rows = []
    for run in records:
        row: dict[str, Any] = {
            "id": run.id, "name": run.name, "label": run.label, "status": run.status,
            "started": run.started_at, "ended": run.ended_at, "duration_s": run.duration_s, "epoch": run.epoch,
            "parent_id": run.parent_id, "reproduces_id": run.reproduces_id, "sweep": sweeps.get(run.id),
            "cell": cells.get(run.id), "tags": ",".join(all_tags[run.id]), "git_commit": run.git_commit,
            "git_dirty": run.git_dirty, "run_dir": run.run_dir,
        }
        row.update({f"config.{k}": v for k, v in flatten(run.config).items()})
        s = summaries[run.id]
        for metric in names:
            row[f"final.{metric}"] = s[metric].final if metric in s else float("nan")
        for metric in names:
            row[f"best.{metric}"] = s[metric].best if metric in s else float("nan")
        rows.append(row)
    head = ["id", "name", "label", "status", "started", "ended", "duration_s", "epoch", "parent_id", "reproduces_id",
            "sweep", "cell", "tags", "git_commit", "git_dirty", "run_dir"]
    config_keys = sorted({k for row in rows for k in row if k.startswith("config.")})
    columns = head + config_keys + [f"final.{m}" for m in names] + [f"best.{m}" for m in names]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("started", "ended"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _cells(reader: JournalReader, ids: list[int]) -> dict[int, str]:
    from fastpose.journal.reader import _chunks, _in_params

    out: dict[int, str] = {}
    for chunk in _chunks(ids, 500):
        marks, params = _in_params(chunk)
        for row in reader._fetch(f"SELECT run_id, cell FROM sweep_runs WHERE run_id IN ({marks})", params):
            out[row["run_id"]] = row["cell"]
    return out


def history(run: int | str, metrics: Iterable[str] | None = None, *, url: str | None = None) -> pd.DataFrame:
    """Every value run ``run`` (an id, label, label prefix or NAME) logged, in logging order; ``metrics``
    keeps only those names."""
    pd = _pandas()
    wanted = None if metrics is None else set([metrics] if isinstance(metrics, str) else metrics)
    with _reader(url) as reader:
        record = reader.resolve(str(run))
        points = reader.metric_history(record.id)
    rows = [{"run_id": record.id, "name": p.name, "epoch": p.epoch, "step": p.step, "value": p.value, "time": p.time}
            for p in points if wanted is None or p.name in wanted]
    frame = pd.DataFrame(rows, columns=["run_id", "name", "epoch", "step", "value", "time"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    for column in ("epoch", "step"):
        frame[column] = frame[column].astype("Int64")  # integers with gaps (None where not logged)
    return frame
