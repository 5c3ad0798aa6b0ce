"""What each web page shows, built from the screens' models (``fastpose.screens``) on one read-only reader:
a template context for the HTML and the JSON twin (the shapes of the CLI's ``--json``).

| page     | model                                   | JSON (``/api/...``)                                  |
| -------- | --------------------------------------- | ---------------------------------------------------- |
| runs     | ``DailyLog`` of one ``listing.page_runs`` page | ``journal --json`` (a list; ``X-Total-Count``, ``Link``) |
| run      | ``RunDetail``                           | ``run_to_json`` + the details of ``journal show``    |
| compare  | ``Comparison``                          | ``compare --json``                                   |
| sweeps   | ``sweep_overview``                      | ``journal sweeps --json``                            |
| sweep    | cells, ``GroupComparison``, ``choose``  | its overview row, cells, ``compare --sweep --json``, the tuning grid |

Runs whose process is gone but that nobody has marked ``lost`` yet are shown as lost (``shown_lost``): the
web view never writes the journal.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastpose.errors import FastposeError
from fastpose.screens.format import (
    arrow, diff_stat, differing_labels, direction, fmt_bytes, fmt_duration, fmt_value, json_num,
    last_traceback_line, local, metric_group, metric_order, run_primary, short_metric,
)
from fastpose.screens.web.charts import Series, colour, line_chart

if TYPE_CHECKING:
    from fastpose.journal.reader import JournalReader
    from fastpose.journal.records import RunRecord

PAGE_SIZES = (50, 100)
OPTIONAL = ("val/miss_rate", "val/rot_err_median", "val/trans_err_median_cm", "val/loss", "train/loss")
MAX_COMPARE = 50
CHARTS_MAX = 24  # metric panels on a run or compare page (per-class metrics go to a table)


# ----------------------------------------------------------------------------- lost runs, seen on read
def shown_lost(reader: JournalReader) -> dict[int, str]:
    """``{run id: why}`` of running runs whose process is gone (or, elsewhere, whose heartbeat is too old)."""
    return {run.id: reason for run, reason in reader.lost_candidates()}


def as_lost(run: RunRecord, lost: dict[int, str]) -> RunRecord:
    """The run as ``mark_lost`` would leave it, when ``lost`` names it; else unchanged."""
    if run.id not in lost or run.status != "running":
        return run
    return replace(run, status="lost", ended_at=run.heartbeat_at or run.started_at, error_message=lost[run.id])


# ----------------------------------------------------------------------------- runs
@dataclass
class RunsQuery:
    since: str | None = None
    status: str | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()
    sweep: str | None = None
    where: tuple[str, ...] = ()
    sort: str = "started"
    order: str = "desc"
    page: int = 1
    per: int = 50

    @classmethod
    def parse(cls, params: Any) -> RunsQuery:
        """From the URL's query (a multi-dict); every value checked as the CLI checks its option."""
        from fastpose.journal.listing import check_sort
        from fastpose.journal.reader import STATUSES

        def one(key: str) -> str | None:
            value = params.get(key)
            return value.strip() or None if isinstance(value, str) else None

        q = cls(since=one("since"), status=one("status"), name=one("name"), sweep=one("sweep"),
                tags=tuple(t for value in params.getlist("tag") for t in value.split()),
                where=tuple(w for value in params.getlist("where") for w in value.split()),
                sort=one("sort") or "started", order=one("order") or "desc")
        if q.status is not None and q.status not in STATUSES:
            raise FastposeError(f"status {q.status!r}: choose one of {', '.join(STATUSES)}")
        if q.name is not None:
            from fastpose.config import validate_name

            validate_name(q.name)
        check_sort(q.sort)
        if q.order not in ("asc", "desc"):
            raise FastposeError(f"order {q.order!r}: asc or desc")
        q.page = _int(one("page") or "1", "page", 1, 10**9)
        q.per = _int(one("per") or "50", "per", 1, 10**9)
        if q.per not in PAGE_SIZES:
            raise FastposeError(f"per {q.per}: a page holds {' or '.join(map(str, PAGE_SIZES))} runs")
        return q

    @property
    def filtered(self) -> bool:
        return bool(self.status or self.name or self.tags or self.sweep or self.where)

    def url(self, path: str = "/", **changes: Any) -> str:
        """This query with ``changes``, as a URL (defaults left out)."""
        q = replace(self, **changes)
        pairs: list[tuple[str, Any]] = [(k, getattr(q, k)) for k in ("since", "status", "name", "sweep") if getattr(q, k)]
        pairs += [("tag", t) for t in q.tags] + [("where", w) for w in q.where]
        if q.sort != "started":
            pairs.append(("sort", q.sort))
        if q.order != "desc":
            pairs.append(("order", q.order))
        if q.per != 50:
            pairs.append(("per", q.per))
        if q.page != 1:
            pairs.append(("page", q.page))
        return path + ("?" + urlencode(pairs) if pairs else "")

    def sort_url(self, key: str) -> str:
        """The column header's link: sort by ``key``; again: the other way. Metrics start best first."""
        if self.sort == key:
            return self.url(sort=key, order="asc" if self.order == "desc" else "desc", page=1)
        first = "desc"
        if key.startswith("metric:"):
            first = "asc" if direction(key[7:]) == "min" else "desc"
        elif key in ("name", "status"):
            first = "asc"
        return self.url(sort=key, order=first, page=1)


def _int(text: str, what: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise FastposeError(f"{what} {text!r}: a whole number from {low} to {high:,}")
    return int(text)


def runs_page(reader: JournalReader, q: RunsQuery) -> dict[str, Any]:
    """The daily log of one page: its runs (lost ones as lost), their summaries and notes, the day notes of
    the days it shows (none when filtered or sorted otherwise)."""
    from fastpose.journal.listing import page_runs
    from fastpose.journal.reader import parse_since
    from fastpose.screens.daily_log import DailyLog

    since = parse_since(q.since) if q.since else None
    tags = []
    if q.tags:
        from fastpose.journal.tags import validate_tag

        tags = [validate_tag(t) for t in q.tags]
    where = []
    if q.where:
        from fastpose.journal.tags import parse_where

        where = parse_where(q.where)
    sweep_id = None
    if q.sweep:
        from fastpose.journal.sweeps import get_sweep

        sweep_id = get_sweep(reader, q.sweep).id
    lost = shown_lost(reader)
    page = page_runs(reader, since=since, status=q.status, name=q.name, tags=tags, sweep_id=sweep_id, where=where,
                     sort=q.sort, descending=q.order == "desc", offset=(q.page - 1) * q.per, limit=q.per,
                     lost_ids=lost)
    runs = [as_lost(r, lost) for r in page.runs]
    by_day = q.sort == "started"
    day_notes = []
    if by_day and not q.filtered and runs:
        days = sorted(local(r.started_at).date() for r in runs)
        first = parse_since(f"{days[0]:%Y-%m-%d}")
        until = None
        if q.page > 1 or q.order == "asc":  # not the newest page: only the days it shows
            from datetime import timedelta

            until = parse_since(f"{days[-1]:%Y-%m-%d}") + timedelta(days=1)
        day_notes = reader.day_notes(since=max(first, since) if since else first, until=until)
    elif by_day and not q.filtered and q.page == 1:
        day_notes = reader.day_notes(since=since)
    log = DailyLog(reader, runs, day_notes)
    return {"log": log, "page": page, "query": q, "by_day": by_day, "lost": lost}


def runs_context(data: dict[str, Any]) -> dict[str, Any]:
    """Rows for the template: day headers, runs (cells as text), notes under them."""
    log, q, page = data["log"], data["query"], data["page"]
    runs = log.runs
    primaries = {r.id: run_primary(r.config, log.summaries[r.id]) for r in runs}
    one_primary = len(set(primaries.values())) <= 1
    first = next(iter(primaries.values()), None) or "val/10deg"
    shown = differing_labels(runs)

    def value(run: RunRecord, name: str, kind: str = "final") -> str:
        s = log.summaries[run.id].get(name)
        return "-" if s is None else fmt_value(getattr(s, kind))

    def run_row(run: RunRecord) -> dict[str, Any]:
        primary = primaries[run.id]
        suffix, parts = shown[run.id]
        when = local(run.started_at)
        return {
            "kind": "run", "id": run.id, "time": f"{when:%H:%M}" if data["by_day"] else f"{when:%Y-%m-%d %H:%M}",
            "name": run.name + suffix, "parts": parts, "parent_id": run.parent_id, "label": run.label,
            "status": run.status, "took": fmt_duration(run.duration_s),
            "primary": value(run, primary) if one_primary else f"{primary} {value(run, primary)}",
            "best": value(run, primary, "best"),
            "optional": [value(run, m) for m in OPTIONAL],
            "crash": last_traceback_line(run),
            "lost_reason": data["lost"].get(run.id),
            "notes": [n.text for n in log.notes[run.id]],
        }

    rows: list[dict[str, Any]] = []
    if data["by_day"]:
        for day in log.ordered_days():
            rows.append({"kind": "day", "day": f"{day:%Y-%m-%d %A}"})
            rows.extend(run_row(r) for r in log.days.get(day, []))
            rows.extend({"kind": "day_note", "time": f"{local(n.created_at):%H:%M}", "text": n.text}
                        for n in log.day_notes.get(day, []))
    else:
        rows = [run_row(r) for r in runs]
    primary_head = f"{first} {arrow(first)}" if one_primary else "primary (train.monitor)"
    columns = [("started", "time"), ("id", "id"), ("name", "run"), ("status", "status"), ("duration", "took"),
               (f"metric:{first}", primary_head), (None, "best")]
    columns += [(f"metric:{m}", f"{m if 'loss' in m else short_metric(m)} {arrow(m)}") for m in OPTIONAL]
    last = min(page.offset + len(runs), page.total)
    pages = max(1, math.ceil(page.total / q.per))
    return {
        "rows": rows, "columns": [(key, head, q.sort_url(key) if key else None,
                                   ("▼" if q.order == "desc" else "▲") if key == q.sort else "")
                                  for key, head in columns],
        "query": q, "total": page.total, "first": page.offset + 1 if runs else 0, "last": last,
        "pages": pages, "prev": q.url(page=q.page - 1) if q.page > 1 else None,
        "next": q.url(page=q.page + 1) if q.page < pages else None,
        "per_links": [(n, q.url(per=n, page=1)) for n in PAGE_SIZES],
        "statuses": _statuses(),
    }


def _statuses() -> tuple[str, ...]:
    from fastpose.journal.reader import STATUSES

    return STATUSES


def runs_links(q: RunsQuery, page: Any, base: str) -> str:
    """The ``Link`` header of ``/api/runs`` (first, prev, next, last), RFC 8288."""
    pages = max(1, math.ceil(page.total / q.per))
    links = [(q.url(base, page=1), "first"), (q.url(base, page=pages), "last")]
    if q.page > 1:
        links.append((q.url(base, page=q.page - 1), "prev"))
    if q.page < pages:
        links.append((q.url(base, page=q.page + 1), "next"))
    return ", ".join(f'<{url}>; rel="{rel}"' for url, rel in links)


# ----------------------------------------------------------------------------- one run
def run_detail(reader: JournalReader, run_id: int) -> Any:
    from fastpose.screens.run import load_run_detail

    run = reader.get_run(run_id)
    if run.deleted_at is not None:
        from fastpose.journal.reader import UnknownRunError

        raise UnknownRunError(f"no run with id {run_id}")
    lost = {} if run.status != "running" else {r.id: why for r, why in reader.lost_candidates() if r.id == run.id}
    return load_run_detail(reader, as_lost(run, lost))


def run_context(reader: JournalReader, detail: Any) -> dict[str, Any]:
    from fastpose.config import toml_text
    from fastpose.journal.sweeps import describe, sweep_of_run
    from fastpose.journal.tags import run_tags
    from fastpose.screens.evaluation import evaluation_table

    run = detail.run
    where = f"epoch {run.epoch}, step {run.step}" if run.epoch is not None or run.step is not None else "-"
    beat = local(run.heartbeat_at)
    head = [
        ("started", f"{local(run.started_at):%Y-%m-%d %H:%M:%S}"),
        ("ended", f"{local(run.ended_at):%Y-%m-%d %H:%M:%S}" if run.ended_at else "-"),
        ("duration", fmt_duration(run.duration_s) + (" so far" if run.status == "running" else "")),
        ("running" if run.status == "running" else "ended at",
         f"{where}; last heartbeat {beat:%H:%M:%S}" if run.status == "running" and beat else where),
        ("host / pid", f"{run.host} / {run.pid}  (user {run.username})"),
        ("command", run.command or "-"),
        ("cwd", run.cwd or "-"),
        ("run dir", run.run_dir or "-"),
        ("checkpoint", run.checkpoint or "-"),
        ("versions", f"python {run.python_version}, torch {run.torch_version}, lightning {run.lightning_version}"),
    ]
    if run.error_message and run.status != "crashed":
        head.append(("message", run.error_message))
    marked = {key for key, _, _ in detail.config_changed}
    config_lines, section = [], ""
    for line in toml_text(run.config or {}).splitlines():
        if line.startswith("["):
            section = line.strip("[]") + "."
        key = line.split(" = ", 1)[0].lstrip("# ")
        config_lines.append((section + key in marked or (key in marked and not section), line))
    sweep = sweep_of_run(reader, run.id)
    sweep_name = None
    if sweep is not None:
        from fastpose.journal.sweeps import by_id

        sweep_name = by_id(reader, sweep[0]).name
    checkpoints = None
    if detail.checkpoints is not None:
        unique = sum(size for _, _, size, same in detail.checkpoints if same is None)
        checkpoints = {"total": fmt_bytes(unique),
                       "files": [(kind, name, fmt_bytes(size), same) for kind, name, size, same in detail.checkpoints]}
    evaluations = []
    for ev in detail.evaluations:
        table = evaluation_table(ev.metrics, f"{ev.split} split, {ev.checkpoint}")
        evaluations.append({"record": ev, "table": table, "percent": _percent,
                            "when": f"{local(ev.created_at):%Y-%m-%d %H:%M}"})
    return {
        "run": run, "head": head, "detail": detail, "tags": run_tags(reader, [run.id])[run.id],
        "sweep": None if sweep is None else {"name": sweep_name, "cell": describe(sweep[1])},
        "changed": [(k, _toml_or_none(v), "(not a config key today)" if d is KeyError else f"(default {_toml_or_none(d)})")
                    for k, v, d in detail.config_changed],
        "config_lines": config_lines,
        "git": _git(detail.git), "source": detail.source, "source_git": _git(detail.source),
        "crash": run.traceback or run.status == "crashed",
        "checkpoints": checkpoints, "evaluations": evaluations,
        "live": live_context(detail),
    }


def live_context(detail: Any) -> dict[str, Any]:
    """The part of a run page that a running run refreshes: status, position, metrics and their curves."""
    run = detail.run
    names = metric_order(set(detail.summaries) | set(detail.history), detail.primary)
    per_class = [n for n in names if metric_group(n) == "per class"]
    rows, charts = [], []
    for name in names:
        if name in per_class:
            continue
        s = detail.summaries.get(name)
        values = detail.history.get(name, [])
        finite = [v for v in values if math.isfinite(v)]
        rows.append({"name": name, "primary": name == detail.primary, "arrow": arrow(name), "n": len(values),
                     "final": fmt_value(s.final) if s else "-", "best": fmt_value(s.best) if s else "-",
                     "at": "-" if s is None or s.best_epoch is None else str(s.best_epoch),
                     "min": fmt_value(min(finite)) if finite else "-", "max": fmt_value(max(finite)) if finite else "-"})
        if len(charts) < CHARTS_MAX and finite:
            points = detail.curves.get(name) or list(enumerate(values))
            charts.append(line_chart(name, [Series(run.name, points, colour(0))], direction=direction(name)))
    table = None
    if per_class:
        bases = metric_order({n.rsplit("/", 1)[0] for n in per_class})
        classes = sorted({n.rsplit("/", 1)[1] for n in per_class})
        table = {"classes": classes, "rows": [
            (base, [fmt_value(detail.summaries[f"{base}/{c}"].final) if f"{base}/{c}" in detail.summaries else "-"
                    for c in classes]) for base in bases]}
    where = f"epoch {run.epoch}, step {run.step}" if run.epoch is not None or run.step is not None else "-"
    beat = local(run.heartbeat_at)
    from fastpose.screens.web.files import has_png, pose_panel

    pictures = []
    if pose_panel(run.run_dir) is not None:
        pictures.append((f"/runs/{run.id}/poses.png?epoch={run.epoch}", "poses",
                         "val/poses, the newest in its TensorBoard events: ground truth left, prediction right"))
    for ev in detail.evaluations:
        if has_png(ev.plot_path):
            pictures.append((f"/runs/{run.id}/evaluations/{ev.id}.png", "pr",
                             f"PR curves, {ev.split} split, {local(ev.created_at):%Y-%m-%d %H:%M}"))
    return {"run": run, "rows": rows, "charts": charts, "per_class": table, "where": where, "pictures": pictures,
            "beat": f"{beat:%H:%M:%S}" if beat else "-", "took": fmt_duration(run.duration_s)}


def run_json(reader: JournalReader, detail: Any) -> dict[str, Any]:
    """``run_to_json`` (the ``--json`` run object) plus what ``journal show`` shows."""
    from fastpose.journal.tags import run_tags
    from fastpose.screens.runs import run_to_json
    from fastpose.text import finite_json

    run = detail.run
    out = run_to_json(run, summaries=detail.summaries, notes=detail.notes)
    out.update({
        "command": run.command, "cwd": run.cwd, "username": run.username, "heartbeat": _iso(run.heartbeat_at),
        "traceback": run.traceback, "primary_metric": detail.primary,
        "versions": {"python": run.python_version, "torch": run.torch_version, "lightning": run.lightning_version},
        "environment": finite_json(run.environment) if run.environment is not None else None,
        "tags": run_tags(reader, [run.id])[run.id],
        "config_not_default": [{"key": k, "value": finite_json(v), "default": None if d is KeyError else finite_json(d),
                                "known": d is not KeyError} for k, v, d in detail.config_changed],
        "git": _git_json(detail.git),
        "fastpose": None if detail.source is None else {
            **_git_json(detail.source), "version": detail.source.version, "location": detail.source.location,
            "same_as_cwd": detail.source.same_as_cwd},
        "checkpoints": None if detail.checkpoints is None else [
            {"kind": kind, "file": name, "bytes": size, "same_file_as": same} for kind, name, size, same in detail.checkpoints],
        "history": {name: [[e, json_num(v)] for e, v in points] for name, points in detail.curves.items()},
        "evaluations": [ev.to_json() for ev in detail.evaluations],
    })
    return out


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _git(git: Any) -> dict[str, Any] | None:
    if git is None:
        return None
    return {"state": git, "stat": diff_stat(git.diff), "first_line": (git.message or "").splitlines()[0] if git.message else ""}


def _git_json(git: Any) -> dict[str, Any] | None:
    if git is None:
        return None
    return {"is_repo": git.is_repo, "commit": git.commit, "branch": git.branch, "dirty": git.dirty, "diff": git.diff,
            "untracked": list(git.untracked), "message": git.message, "error": git.error}


def _toml_or_none(value: Any) -> str:
    from fastpose.config import _toml_value

    return "none" if value is None else _toml_value(value)


def _percent(value: float) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


# ----------------------------------------------------------------------------- compare
def compare_refs(params: Any) -> list[str]:
    refs = [r.strip() for r in params.getlist("run") if r.strip()]
    if len(refs) < 2:
        raise FastposeError("compare needs at least two runs: tick two or more on the runs page")
    if len(refs) > MAX_COMPARE:
        raise FastposeError(f"compare takes at most {MAX_COMPARE} runs, got {len(refs)}")
    return refs


def load_compare(reader: JournalReader, refs: list[str]) -> Any:
    from fastpose.screens.comparison import load_comparison

    cmp = load_comparison(refs, reader)
    lost = {r.id: why for r, why in reader.lost_candidates()} if any(r.status == "running" for r in cmp.runs) else {}
    cmp.runs = [as_lost(r, lost) for r in cmp.runs]
    return cmp


def compare_context(cmp: Any, per_class: bool) -> dict[str, Any]:
    primary = cmp.primary
    w = cmp.winner(primary, "best")
    runs = []
    for i, run in enumerate(cmp.runs):
        epochs = sorted({e for points in cmp.curve(run, primary) for e, _ in points}) or cmp.epochs(run)
        runs.append({"n": i + 1, "run": run, "colour": colour(i), "span": f"{epochs[0]}-{epochs[-1]}" if epochs else "-",
                     "took": fmt_duration(run.duration_s), "parents": cmp.parents.get(run.id, [])})
    shown = cmp.shown_metrics(per_class)
    rows = [(name, "final") for name in shown]
    if primary in shown:
        rows.insert(1, (primary, "best"))
    table = []
    for name, kind in rows:
        values = cmp.values(name, kind)
        win = cmp.winner(name, kind)
        comparable = cmp.comparable(name)
        cells = []
        for i, value in enumerate(values):
            if value is None or not math.isfinite(value):
                cells.append({"text": "-" if value is None else "nan", "cls": "dim", "best": False, "delta": None})
                continue
            cell = {"text": fmt_value(value), "best": i == win and len(values) > 1, "cls": "win" if i == win else "",
                    "delta": None}
            first = values[0]
            if i > 0 and first is not None and math.isfinite(first):
                delta = value - first
                from fastpose.screens.format import is_better

                cell["delta"] = f"{delta:+.3g}"
                cell["delta_cls"] = "dim" if not comparable or not delta else ("good" if is_better(name, value, first) else "bad")
            cells.append(cell)
        table.append({"name": name if kind == "final" else f"{name} (best)", "primary": name == primary,
                      "arrow": arrow(name), "comparable": comparable, "cells": cells})
    charts = []
    for name in [n for n in shown if metric_group(n) != "per class"][:CHARTS_MAX]:
        series = []
        for i, run in enumerate(cmp.runs):
            inherited, own = cmp.curve(run, name)
            if inherited or own:
                series.append(Series(f"#{i + 1} {run.name}", [(e, v) for e, v in own], colour(i),
                                     extra=[(e, v) for e, v in inherited]))
        if series:
            charts.append(line_chart(name, series, direction=direction(name)))
    code = []
    for i, (run, relation, source_relation) in enumerate(zip(cmp.runs, cmp.code(), cmp.source_code()), 1):
        git = cmp.git[run.id]
        if git is None:
            wd = "not recorded"
        elif not git.is_repo or git.commit is None:
            wd = git.error or "not a git repository"
        else:
            wd = git.commit[:10] + (" dirty" if git.dirty else "")
        source = cmp.source.get(run.id)
        if source is None:
            fp = "not recorded"
        else:
            fp = source.version or "?"
            if source.is_repo and source.commit:
                fp += f" {source.commit[:10]}" + (" dirty" if source.dirty else "")
                if source.same_as_cwd:
                    fp += " (= working directory)"
            else:
                fp += " (installed, no checkout)"
        code.append({"n": i, "wd": wd + (f" ({relation} vs #1)" if i > 1 else ""),
                     "fastpose": fp + (f" ({source_relation} vs #1)" if i > 1 else "")})
    diff = [(key, [repr(v) if isinstance(v, str) or v is None else str(v) for v in values])
            for key, values in cmp.config_diff().items()]
    return {
        "cmp": cmp, "runs": runs, "primary": primary, "primary_way": "lower" if direction(primary) == "min" else "higher",
        "winner": None if w is None else {"n": w + 1, "run": cmp.runs[w], "value": fmt_value(cmp.values(primary, "best")[w])},
        "table": table, "hidden": len(cmp.metrics) - len(shown), "per_class": per_class,
        "incomparable": any(not r["comparable"] for r in table), "charts": charts, "diff": diff, "code": code,
    }


# ----------------------------------------------------------------------------- sweeps
def sweep_page(reader: JournalReader, ref: str, tuning: bool = False) -> dict[str, Any]:
    """A sweep's overview row, its cells (in the file's order, pending ones too), its groups as ``compare
    --sweep`` (or why there are none yet) and, for a tuned sweep, the tuning grid."""
    from fastpose.journal.sweeps import cell_runs, cell_states, describe, get_sweep, group_key
    from fastpose.screens.groups import load_groups
    from fastpose.screens.sweep import sweep_overview
    from fastpose.studies.spec import SweepSpec

    record = get_sweep(reader, ref)
    overview = next((row for row in sweep_overview(reader) if row["id"] == record.id), None)
    runs = cell_runs(reader, record.id)
    lost = shown_lost(reader) if any(r.status == "running" for r in runs) else {}
    states = cell_states(runs)
    try:
        spec = SweepSpec.from_json(record.name, record.spec)
        planned = [c.key for c in spec.tuning_cells()] + [c.key for c in spec.cells()] if spec.tune_axes else [
            c.key for c in spec.cells()]
    except FastposeError:
        spec, planned = None, []
    cells = []
    for key in list(dict.fromkeys(planned + sorted(states))):
        state, run = states.get(key, ("pending", None))
        if run is not None and run.run_id in lost and state == "running":
            state = "lost"
        values = json.loads(key)
        cells.append({"cell": describe(key), "values": values, "group": describe(group_key(values)), "state": state,
                      "run_id": None if run is None else run.run_id, "label": None if run is None else run.label,
                      "epoch": None if run is None else run.epoch})
    groups, groups_error = None, None
    try:
        groups = load_groups(reader, sweep=record.name, tuning=tuning)
    except FastposeError as exc:
        groups_error = str(exc)
    grid = None
    if spec is not None and spec.tune_axes:
        from fastpose.studies.plan import choose

        grid = {"axes": list(spec.tune_axes), "choices": list(choose(reader, record.id, spec).values())}
    return {"record": record, "overview": overview, "cells": cells, "groups": groups, "groups_error": groups_error,
            "grid": grid, "tuning": tuning}


def sweep_json(data: dict[str, Any]) -> dict[str, Any]:
    grid = data["grid"]
    return {
        "sweep": data["overview"], "cells": data["cells"],
        "groups": None if data["groups"] is None else data["groups"].to_json(), "groups_error": data["groups_error"],
        "tuning": None if grid is None else [
            {"group": c.group, "metric": c.metric, "chosen": c.values,
             "points": [{"values": v, "state": s, "best": json_num(b)} for v, s, b in c.points]}
            for c in grid["choices"]],
    }


METRICS_PER_TABLE = 5  # metrics per group table on a sweep's page (per-class metrics get a table of their own)


def sweep_context(data: dict[str, Any]) -> dict[str, Any]:
    from fastpose.journal.sweeps import describe
    from fastpose.studies.stats import TEST_NAME

    cmp = data["groups"]
    tables, contrasts, charts, legend = [], [], [], []
    if cmp is not None:
        shown = [m for m in cmp.metrics if any(cmp.summary(g, m).n for g in cmp.groups)]
        if cmp.primary in shown:
            shown.remove(cmp.primary)
            shown.insert(0, cmp.primary)
        best = {name: cmp.best(name) for name in shown}
        per_class = [m for m in shown if metric_group(m) == "per class"]
        main = [m for m in shown if m not in per_class]
        for start in range(0, len(main), METRICS_PER_TABLE):
            chunk = main[start : start + METRICS_PER_TABLE]
            rows = []
            for g in cmp.groups:
                cells = []
                for name in chunk:
                    s = cmp.summary(g, name)
                    cells.append(None if not s.n else {
                        "mean": fmt_value(s.mean), "sd": fmt_value(s.sd) if s.n > 1 else "-",
                        "range": f"[{fmt_value(s.min)}, {fmt_value(s.max)}]", "best": best[name] is g,
                        "n": s.n if s.n != len(g.runs) else None})
                rows.append({"group": g.label, "n": len(g.runs), "cells": cells})
            tables.append({"heads": [(n, arrow(n), cmp.comparable(n), n == cmp.primary) for n in chunk], "rows": rows})
        contrasts = cmp.contrasts()
        legend = [(g.label, colour(i), len(g.runs)) for i, g in enumerate(cmp.groups)]
        for name in metric_order(set(main), cmp.primary)[:6]:
            series = []
            for i, g in enumerate(cmp.groups):
                per_epoch: dict[int, list[float]] = {}
                for run in g.runs:
                    for e, v in cmp.histories[run.id].get(name, []):
                        if math.isfinite(v):
                            per_epoch.setdefault(e, []).append(v)
                points = [(e, sum(vs) / len(vs)) for e, vs in sorted(per_epoch.items())]
                if points:
                    series.append(Series(f"{g.label} (mean of {len(g.runs)})", points, colour(i)))
            if series:
                charts.append(line_chart(name, series, direction=direction(name)))
    grid = data["grid"]
    grid_rows = []
    if grid is not None:
        for c in grid["choices"]:
            for pick, state, value in c.points:
                grid_rows.append({"group": describe(c.group), "picks": [pick[a] for a in grid["axes"]],
                                  "state": state, "best": "-" if value is None else fmt_value(value),
                                  "chosen": pick == c.values, "metric": c.metric})
    reason = None
    if cmp is not None and not contrasts:
        reason = "not comparable across these runs" if not cmp.comparable(cmp.primary) else "fewer than two groups have values"
    return {**data, "tables": tables, "contrasts": contrasts, "charts": charts, "legend": legend, "test_name": TEST_NAME,
            "no_verdict": reason, "grid_rows": grid_rows}


def day_of(value: datetime) -> date:
    return local(value).date()
