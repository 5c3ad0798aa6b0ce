"""One page of the runs listing, filtered, sorted and cut on the database: the web view's runs page never
reads more runs than it shows (a ``--where`` config condition aside, which is matched in Python).

| sort key       | order (``descending`` flips the first key; ties: newest first)                     |
| -------------- | ---------------------------------------------------------------------------------- |
| ``started``    | start time, then id                                                                |
| ``id``         | run id                                                                             |
| ``name``       | run NAME                                                                           |
| ``status``     | status as stored (a run shown as lost but not yet marked sorts as running)         |
| ``duration``   | end (or last heartbeat) minus start; runs without either last                      |
| ``metric:N``   | the final value of metric N (``metric_summaries``); runs without one last          |

Statuses: a run whose process is gone but that no writer has marked yet (``lost_ids``, from
``JournalReader.lost_candidates``) counts as ``lost`` for the ``status`` filter, not ``running``. Runs deleted
by ``journal rm`` (``deleted_at``) are not listed. Torch-free, plain SQL with bound parameters on any reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

from fastpose.errors import FastposeError

if TYPE_CHECKING:
    from fastpose.journal.reader import JournalReader
    from fastpose.journal.records import RunRecord

SORTS = ("started", "id", "name", "status", "duration")
MAX_PAGE = 500


@dataclass(frozen=True)
class RunPage:
    runs: list[RunRecord]
    total: int  # runs matching the filters, on every page
    offset: int
    limit: int


def check_sort(sort: str) -> str:
    """``sort`` if it is a key of the table above, else FastposeError (one line naming the choices)."""
    if sort in SORTS or (sort.startswith("metric:") and 0 < len(sort) - 7 <= 255):
        return sort
    raise FastposeError(f"sort {sort!r}: choose one of {', '.join(SORTS)} or metric:NAME (e.g. metric:val/10deg)")


def page_runs(
    reader: JournalReader,
    *,
    since: datetime | None = None,
    status: str | None = None,
    name: str | None = None,
    tags: Iterable[str] = (),
    sweep_id: int | None = None,
    where: list[tuple[str, Any]] | None = None,
    sort: str = "started",
    descending: bool = True,
    offset: int = 0,
    limit: int = 50,
    lost_ids: Iterable[int] = (),
) -> RunPage:
    """Runs ``offset`` to ``offset + limit`` of the listing the filters select, in the ``sort`` order."""
    from fastpose.journal.tags import config_matches, run_clauses

    check_sort(sort)
    if not 0 < limit <= MAX_PAGE or offset < 0:
        raise FastposeError(f"a page holds 1 to {MAX_PAGE} runs from offset 0 on, got {limit} from {offset}")
    clauses, params = run_clauses(reader, since=since, name=name, tags=tags, sweep_id=sweep_id)
    # Not through deleted_at's index: SQLite would take it (equality on NULL looks selective) and sort every
    # run for the page; the unary + keeps the term off the index (PostgreSQL has no + for times, nor the need).
    clauses.append("+r.deleted_at IS NULL" if reader._is_sqlite else "r.deleted_at IS NULL")
    lost = sorted({int(i) for i in lost_ids})
    lost_in = ", ".join(f":lost{i}" for i in range(len(lost)))
    params.update({f"lost{i}": v for i, v in enumerate(lost)})
    if status == "lost" and lost:
        clauses.append(f"(r.status = 'lost' OR r.id IN ({lost_in}))")
    elif status == "running" and lost:
        clauses.append(f"r.status = 'running' AND r.id NOT IN ({lost_in})")
    elif status is not None:
        clauses.append("r.status = :status")
        params["status"] = status
    order = _order(reader, sort, descending, params)
    where_sql = " AND ".join(clauses)
    if where:  # config conditions: match every candidate's config, in order, then cut the page
        rows = reader._fetch(f"SELECT r.id, r.config FROM runs r WHERE {where_sql} ORDER BY {order}", params)
        from fastpose.journal.records import json_value

        ids = [row["id"] for row in rows if config_matches(json_value(row["config"]) or {}, where)]
        page_ids = ids[offset : offset + limit]
        if not page_ids:
            return RunPage([], len(ids), offset, limit)
        marks = ", ".join(f":id{i}" for i in range(len(page_ids)))
        by_id = {r.id: r for r in reader._runs(f"r.id IN ({marks})", {f"id{i}": v for i, v in enumerate(page_ids)})}
        return RunPage([by_id[i] for i in page_ids if i in by_id], len(ids), offset, limit)
    total = reader._fetch(f"SELECT COUNT(*) AS n FROM runs r WHERE {where_sql}", params)[0]["n"]
    runs = reader._runs(where_sql, {**params, "limit": int(limit), "offset": int(offset)},
                        f"ORDER BY {order} LIMIT :limit OFFSET :offset")
    return RunPage(runs, int(total), offset, limit)


def _order(reader: JournalReader, sort: str, descending: bool, params: dict[str, Any]) -> str:
    way = "DESC" if descending else "ASC"
    newest = "r.started_at DESC, r.id DESC"
    if sort == "started":
        return f"r.started_at {way}, r.id {way}"
    if sort == "id":
        return f"r.id {way}"
    if sort in ("name", "status"):
        return f"r.{sort} {way}, {newest}"
    if sort == "duration":
        end = "COALESCE(r.ended_at, r.heartbeat_at)"
        value = (f"(julianday({end}) - julianday(r.started_at))" if reader._is_sqlite
                 else f"EXTRACT(EPOCH FROM ({end} - r.started_at))")
    else:
        params["sort_metric"] = sort[len("metric:"):]
        value = "(SELECT ms.final FROM metric_summaries ms WHERE ms.run_id = r.id AND ms.name = :sort_metric)"
    return f"CASE WHEN {value} IS NULL THEN 1 ELSE 0 END, {value} {way}, {newest}"
