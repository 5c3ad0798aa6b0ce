"""Plain frozen records the journal hands out; never live ORM objects, so no session leaks to callers.

Stdlib only: the fast read path of ``fastpose journal`` builds these from ``sqlite3`` rows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class GitState:
    """The source tree a run started from; ``is_repo=False`` (and ``error``) when it was not a git repo."""

    is_repo: bool
    commit: str | None = None
    branch: str | None = None  # None when HEAD is detached
    dirty: bool = False
    diff: str | None = None  # staged + unstaged changes against HEAD
    untracked: tuple[str, ...] = ()
    message: str | None = None
    error: str | None = None
    # The contents of the small untracked files, ``(path, permission bits, bytes)`` (``capture_git``'s limits;
    # revision 0010): what ``fastpose reproduce`` puts back. Not part of the state's identity.
    files: tuple[tuple[str, int, bytes], ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class SourceState(GitState):
    """The fastpose code a run ran: its version, the package directory, and (``is_repo``) the git state of
    the checkout it belongs to. ``same_as_cwd``: that checkout is the run's working-directory repository."""

    version: str | None = None
    location: str | None = None
    same_as_cwd: bool = False


@dataclass(frozen=True)
class MetricPoint:
    name: str
    value: float
    epoch: int | None = None
    step: int | None = None
    time: datetime | None = None  # filled in by the store when read back


@dataclass(frozen=True)
class MetricSummary:
    name: str
    direction: str  # "min" | "max"
    final: float
    best: float
    best_epoch: int | None
    best_step: int | None
    count: int


@dataclass(frozen=True)
class NoteRecord:
    id: int
    text: str
    created_at: datetime
    run_id: int | None = None


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    label: str
    status: str
    created_at: datetime
    started_at: datetime
    ended_at: datetime | None = None
    heartbeat_at: datetime | None = None
    pid: int | None = None
    host: str | None = None
    proc_start: int | None = None
    username: str | None = None
    command: str | None = None
    cwd: str | None = None
    parent_id: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    checkpoint: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    epoch: int | None = None
    step: int | None = None
    python_version: str | None = None
    torch_version: str | None = None
    lightning_version: str | None = None
    machine_id: str | None = None  # /etc/machine-id, else "boot:<boot id>" (revision 0004)
    pid_namespace: int | None = None  # inode of the run's PID namespace (revision 0004)
    # What changes its numbers besides config and code: threads, device, precision, backend flags, versions
    # (revision 0009; None for older runs)
    environment: dict[str, Any] | None = None
    deleted_at: datetime | None = None  # set by `journal rm` (revision 0009): hidden from listings
    reproduces_id: int | None = None  # the run `fastpose reproduce` rebuilt this one from (revision 0010)
    git_commit: str | None = None
    git_dirty: bool | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end (or to the last heartbeat while running)."""
        end = self.ended_at or self.heartbeat_at
        return None if end is None else max(0.0, (end - self.started_at).total_seconds())


RUN_COLUMNS = tuple(f for f in RunRecord.__dataclass_fields__ if f not in ("git_commit", "git_dirty"))
_RUN_TIMES = ("created_at", "started_at", "ended_at", "heartbeat_at", "deleted_at")


def to_utc(value: Any) -> datetime | None:
    """A stored time (datetime, or SQLite's ``YYYY-MM-DD HH:MM:SS.ffffff`` text) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def sqlite_time(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores (UTC, no offset), for comparisons in raw SQL."""
    return to_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


def json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def run_from_row(row: dict[str, Any]) -> RunRecord:
    data = {k: row[k] for k in RUN_COLUMNS}
    for key in _RUN_TIMES:
        data[key] = to_utc(data[key])
    data["config"] = json_value(data["config"]) or {}
    data["environment"] = json_value(data["environment"])
    data["git_commit"] = row.get("git_commit")
    dirty = row.get("git_dirty")
    data["git_dirty"] = None if dirty is None else bool(dirty)
    return RunRecord(**data)


def git_from_row(row: dict[str, Any]) -> GitState:
    return GitState(
        is_repo=bool(row["is_repo"]),
        commit=row["commit_sha"],
        branch=row["branch"],
        dirty=bool(row["dirty"]),
        diff=row["diff"],
        untracked=tuple(json_value(row["untracked"]) or ()),
        message=row["message"],
        error=row["error"],
    )


def source_from_row(row: dict[str, Any]) -> SourceState:
    """A ``source_states`` row: the git columns as ``git_from_row`` reads them, plus the package's own."""
    return SourceState(**asdict(git_from_row(row)), version=row["fastpose_version"],
                       location=row["location"], same_as_cwd=bool(row["same_as_cwd"]))
