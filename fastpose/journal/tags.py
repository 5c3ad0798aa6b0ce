"""Run tags and the extra filters of ``fastpose journal`` (``--tag``, ``--sweep``, ``--where``). Torch-free.

Tags live in ``run_tags`` (revision 0005). Reads go through any ``JournalReader`` (the stdlib ``sqlite3``
reader of ``fastpose journal`` included); writes through ``JournalStore``'s write transaction.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

from fastpose.errors import FastposeError

if TYPE_CHECKING:
    from fastpose.journal.reader import JournalReader
    from fastpose.journal.records import RunRecord
    from fastpose.journal.store import JournalStore

TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=/+-]{0,99}")


def validate_tag(tag: str) -> str:
    """``tag`` if it is a valid tag, else FastposeError (checked before anything is written)."""
    if not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag):
        raise FastposeError(
            f"invalid tag {tag!r}: use 1-100 characters from A-Z a-z 0-9 _ . : = / + -, starting with a letter or digit"
        )
    return tag


def add_tags(store: JournalStore, run_id: int, tags: Iterable[str]) -> list[str]:
    """Tag run ``run_id`` (tags it already has are kept once); returns the tags actually added."""
    import sqlalchemy as sa

    from fastpose.journal.models import RunTag

    wanted = list(dict.fromkeys(validate_tag(t) for t in tags))
    if not wanted:
        return []
    table = RunTag.__table__

    def work(conn: Any) -> list[str]:
        store._require(conn, run_id)
        have = {r.tag for r in conn.execute(sa.select(table.c.tag).where(table.c.run_id == run_id))}
        new = [t for t in wanted if t not in have]
        if new:
            conn.execute(sa.insert(table), [{"run_id": run_id, "tag": t} for t in new])
        return new

    return store._write(work)


def run_tags(reader: JournalReader, run_ids: list[int]) -> dict[int, list[str]]:
    """``{run_id: [tag, ...]}`` (sorted) for the given runs."""
    from fastpose.journal.reader import _chunks, _in_params

    out: dict[int, list[str]] = {int(i): [] for i in run_ids}
    for chunk in _chunks(list(out), 500):
        marks, params = _in_params(chunk)
        for row in reader._fetch(f"SELECT run_id, tag FROM run_tags WHERE run_id IN ({marks}) ORDER BY tag", params):
            out[row["run_id"]].append(row["tag"])
    return out


# ----------------------------------------------------------------------------- --where KEY=VALUE
def parse_where(items: Iterable[str]) -> list[tuple[str, Any]]:
    """``["loss.name=mse", "train.seed=0"]`` -> ``[("loss.name", "mse"), ("train.seed", 0)]``.

    KEY is a dotted config key (``fastpose train --help`` lists them; ``name`` too); VALUE is read as a
    number, true/false/null, or else as text. Unknown keys are an error.
    """
    from fastpose.config import RunConfig

    known = set(RunConfig().flat())
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise FastposeError(f"--where {item!r}: use KEY=VALUE, e.g. --where loss.name=qloss")
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}" if close else "; keys look like loss.name, train.seed"
            raise FastposeError(f"--where: unknown config key {key!r}{hint}")
        out.append((key, _literal(text.strip())))
    return out


def _literal(text: str) -> Any:
    if text in ("true", "false", "null"):
        return json.loads(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and re.fullmatch(r"[+-]?\d+", text) else number


def config_matches(config: dict[str, Any], conditions: list[tuple[str, Any]]) -> bool:
    """Does the (nested) run config hold every ``(dotted key, value)``? Numbers compare by value."""
    for key, want in conditions:
        node: Any = config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                node = _MISSING
                break
            node = node[part]
        if not _same(node, want):
            return False
    return True


_MISSING = object()


def _same(have: Any, want: Any) -> bool:
    if have is _MISSING:
        return False
    numbers = (int, float)
    if isinstance(have, numbers) and isinstance(want, numbers) and not isinstance(have, bool) and not isinstance(want, bool):
        return math.isclose(float(have), float(want), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(want, str) and not isinstance(have, str):
        return have is not None and str(have) == want
    return have == want


# ----------------------------------------------------------------------------- the filtered listing
def select_runs(
    reader: JournalReader,
    *,
    since: datetime | None = None,
    status: str | None = None,
    name: str | None = None,
    limit: int | None = None,
    tags: Iterable[str] = (),
    sweep_id: int | None = None,
    where: list[tuple[str, Any]] | None = None,
    deleted: str = "hide",
) -> list[RunRecord]:
    """``list_runs`` plus tags (all of them), sweep membership and config conditions; newest first;
    ``deleted`` as in ``JournalReader._runs``."""
    clauses, params = run_clauses(reader, since=since, status=status, name=name, tags=tags, sweep_id=sweep_id)
    tail = "ORDER BY r.started_at DESC, r.id DESC"
    if limit is not None and not where:
        tail += " LIMIT :limit"
        params["limit"] = int(limit)
    runs = reader._runs(" AND ".join(clauses), params, tail, deleted=deleted)
    if where:
        runs = [r for r in runs if config_matches(r.config, where)]
        if limit is not None:
            runs = runs[:limit]
    return runs


def run_clauses(
    reader: JournalReader,
    *,
    since: datetime | None = None,
    status: str | None = None,
    name: str | None = None,
    tags: Iterable[str] = (),
    sweep_id: int | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """The SQL conditions (on ``runs r``) and bound parameters of the listing's filters but ``--where``."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if since is not None:
        clauses.append("r.started_at >= :since")
        params["since"] = reader._p(since)
    if status is not None:
        clauses.append("r.status = :status")
        params["status"] = status
    if name is not None:
        clauses.append("r.name = :name")
        params["name"] = name
    for i, tag in enumerate(tags):
        clauses.append(f"r.id IN (SELECT run_id FROM run_tags WHERE tag = :tag{i})")
        params[f"tag{i}"] = tag
    if sweep_id is not None:
        clauses.append("r.id IN (SELECT run_id FROM sweep_runs WHERE sweep_id = :sweep_id)")
        params["sweep_id"] = int(sweep_id)
    return clauses, params
