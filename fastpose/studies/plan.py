"""How a sweep's cells are planned and followed, for both launchers: ``plan`` (each cell's state from its runs
and claim in the journal), ``SweepJournal`` (claims, retries), ``settle`` (a cell's process ended),
``follow`` (the runs the table shows), ``choose`` (the tuning stage). The command is ``fastpose.studies.sweep``.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, TypeVar

from fastpose.errors import FastposeError
from fastpose.studies.spec import STAGE_KEY, Cell, SweepSpec, cell_toml

WAIT_POLL_S = 2.0  # how often a cell another process holds is looked at again
# What a cell's exit code says until the journal is read (the journal has the last word): train's codes.
EXIT_STATES = {0: "completed", 1: "crashed", 3: "diverged", 130: "interrupted", 143: "interrupted"}
NOT_STARTED = 2  # train/resume: refused before writing anything (bad input, or the journal could not be opened)
T = TypeVar("T")


@dataclass
class Task:
    """What the sweep does with one cell, and (while it runs) how it goes."""

    cell: Cell
    action: str  # train | resume | skip | wait (another process holds the cell)
    parent_id: int | None = None  # resume: the run continued
    reason: str = ""
    # pending | waiting | retrying | running | completed | crashed | interrupted | diverged | lost | failed to start
    state: str = "pending"
    run_id: int | None = None
    exit_code: int | None = None
    token: str | None = None  # our claim on the cell, while we hold it
    launched_at: datetime | None = None  # when this sweep last started the cell (its run starts after)
    not_before: float = 0.0  # time.monotonic() before which the cell is not started (again)
    first_refusal: float | None = None  # time.monotonic() of the first exit 2 (start retries count from it)
    refusals: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class SweepJournal:
    """The sweep process's journal: one store for the whole sweep, each call retried with backoff while the
    journal cannot be reached or stays locked, for up to ``$FASTPOSE_BUSY_TIMEOUT_S``; and the claims this
    process holds, renewed while their cells run and released when they end (all of them on ``close``)."""

    def __init__(self, url: str, sweep_id: int, *, job: str | None = None) -> None:
        from fastpose.environment import positive_seconds
        from fastpose.journal.db import BUSY_TIMEOUT_MS, JournalError
        from fastpose.journal.reader import lost_after_seconds
        from fastpose.journal.store import JournalStore

        self.window_s = positive_seconds("FASTPOSE_BUSY_TIMEOUT_S", BUSY_TIMEOUT_MS / 1000)
        deadline = time.monotonic() + self.window_s
        for attempt in range(10_000):  # a cluster job may start while the server is briefly down
            try:
                self.store = JournalStore.open(url)
                break
            except JournalError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(2.0, 0.1 * 2**attempt) * (0.5 + random.random()))
        self.sweep_id, self.job = sweep_id, job
        self.held: dict[str, str] = {}  # cell key -> claim token
        # Other machines judge our claims by their heartbeat: renew well within the lost limit.
        self.renew_every_s = min(15.0, lost_after_seconds() / 4)
        self._renewed = time.monotonic()

    def __enter__(self) -> SweepJournal:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def call(self, work: Callable[[Any], T], what: str = "the journal") -> T:
        """``work(store)``, retried while the journal is unreachable or locked; then a one-line FastposeError."""
        import sqlalchemy as sa

        deadline = time.monotonic() + self.window_s
        for attempt in range(10_000):
            try:
                return work(self.store)
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
                if time.monotonic() >= deadline:
                    first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise FastposeError(f"{what} stayed unreachable for {self.window_s:g} s: {first}") from None
                time.sleep(min(2.0, 0.1 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def take(self, task: Task) -> str:
        """Claim ``task``'s cell and plan it again: ``"launch"`` (ours now, action fresh), ``"wait"`` (another
        process holds or runs it; reason says who) or ``"done"`` (finished meanwhile: state set). A journal
        that stays unreachable leaves the cell ``failed to start`` (``"done"``)."""
        from fastpose.journal.sweeps import claim_cell

        try:
            claim, ours = self.call(lambda s: claim_cell(s, self.sweep_id, task.cell.key, job=self.job))
            if not ours:
                wait_for_other(task, f"held by {claim.holder}")
                return "wait"
            self.held[task.cell.key] = task.token = claim.token
            fresh = self.call(lambda s: plan_fresh(s, self.sweep_id, [task.cell], mine={claim.token}))[0]
        except FastposeError as exc:
            self.release(task)
            task.action, task.state, task.reason = "skip", "failed to start", str(exc)
            return "done"
        if fresh.action in ("skip", "wait"):
            self.release(task)
            if fresh.action == "wait":
                wait_for_other(task, fresh.reason)
                return "wait"
            done_elsewhere(task, fresh)
            return "done"
        task.action, task.parent_id, task.reason = fresh.action, fresh.parent_id, fresh.reason
        return "launch"

    def peek(self, tasks: list[Task]) -> list[str]:
        """``take`` without claiming, for many cells in one read (a cluster submitter: its jobs claim the
        cells when they start). A journal that cannot be read leaves them all waiting."""
        try:
            fresh = self.call(lambda s: plan(s, self.sweep_id, [t.cell for t in tasks]))
        except FastposeError:
            fresh = [Task(t.cell, "wait", reason=t.reason) for t in tasks]
        out = []
        for task, new in zip(tasks, fresh):
            if new.action == "wait":
                wait_for_other(task, new.reason)
                out.append("wait")
            elif new.action == "skip":
                done_elsewhere(task, new)
                out.append("done")
            else:
                task.action, task.parent_id, task.reason = new.action, new.parent_id, new.reason
                out.append("launch")
        return out

    def claims(self) -> dict[str, Any]:
        """The sweep's claims now (one read); empty when the journal cannot be read."""
        from fastpose.journal.sweeps import cell_claims

        try:
            return self.call(lambda s: cell_claims(s, self.sweep_id))
        except FastposeError:
            return {}

    def release(self, task: Task) -> None:
        """Give ``task``'s cell back. If the journal stays unreachable the claim is left: its holder (this
        process) is judged gone once it exits, so nobody waits on it for long."""
        from fastpose.journal.sweeps import release_claims

        token = self.held.pop(task.cell.key, None)
        task.token = None
        if token is not None:
            try:
                self.call(lambda s: release_claims(s, [token]))
            except FastposeError:
                pass

    def renew(self, force: bool = False) -> None:
        """Refresh the heartbeat of the claims held (every ``renew_every_s``); an unreachable journal waits for
        the next turn."""
        from fastpose.journal.sweeps import renew_claims

        now = time.monotonic()
        if not self.held or (not force and now - self._renewed < self.renew_every_s):
            return
        self._renewed = now
        try:
            renew_claims(self.store, list(self.held.values()))
        except Exception:  # noqa: BLE001 - a missed renewal is retried at the next turn
            pass

    def retry_delay(self, task: Task) -> float | None:
        """After the cell's process wrote nothing (exit 2): seconds to wait before starting it again, or None
        once ``$FASTPOSE_BUSY_TIMEOUT_S`` has passed since the first such exit."""
        now = time.monotonic()
        if task.first_refusal is None:
            task.first_refusal = now
        task.refusals += 1
        if now - task.first_refusal >= self.window_s:
            return None
        return min(0.5 * 2 ** (task.refusals - 1), max(0.1, self.window_s - (now - task.first_refusal)))

    def close(self) -> None:
        from fastpose.journal.sweeps import release_claims

        tokens, self.held = list(self.held.values()), {}
        if tokens:
            try:
                release_claims(self.store, tokens)
            except Exception:  # noqa: BLE001 - left to be judged gone once this process exits
                pass
        self.store.close()


def wait_for_other(task: Task, reason: str) -> None:
    """Another process holds or runs ``task``'s cell: wait, look again in ``WAIT_POLL_S``, and say so once
    per reason on stderr (the table shows it too, but is printed only at the end when not on a terminal)."""
    task.action, task.state, task.reason = "wait", "waiting", reason
    task.not_before = time.monotonic() + WAIT_POLL_S
    if task.extra.get("waited_for") != reason:
        task.extra["waited_for"] = reason
        print(f"{task.cell.name}: {reason}; waiting for it", file=sys.stderr, flush=True)


def done_elsewhere(task: Task, fresh: Task) -> None:
    """The cell ended while another process held it: its state, and who ran it."""
    task.action, task.state, task.run_id = "skip", fresh.state, fresh.run_id
    waited = task.extra.get("waited_for") or ""
    task.reason = fresh.reason + (f", run by {waited.removeprefix('held by ')}" if waited.startswith("held by ") else "")


def last_error(log: Path) -> str:
    """The last ``error:`` line the cell's latest attempt wrote to its log (what it said when it refused)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "no log"
    attempt = text.rsplit("\n$ ", 1)[-1]
    lines = [line.strip() for line in attempt.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["no output"])[-1][:300]


@dataclass
class Choice:
    """One group's tuning result: every grid point's best primary-metric value, and the chosen values."""

    group: str  # group key (the [sweep] axes without seeds)
    metric: str
    points: list[tuple[dict[str, Any], str, float | None]]  # (tuning values, cell state, best value)
    values: dict[str, Any] | None  # the chosen tuning values; None while a grid point is unfinished


def choose(reader: Any, sweep_id: int, spec: SweepSpec) -> dict[str, Choice]:
    """Per group, the tuning values whose run reached the best value of the primary metric (``train.monitor``;
    the best over the cell's run and the runs it continued, i.e. what its best checkpoint holds). A diverged
    grid point is a result (it never wins); a group with a grid point not yet finished has no choice. Ties go
    to the earlier grid point."""
    from fastpose.metrics import is_better, primary_metric
    from fastpose.journal.sweeps import cell_runs, cell_states, group_key

    runs = cell_runs(reader, sweep_id)
    states = cell_states(runs)
    parents = {r.run_id: reader.get_run(r.run_id).parent_id for r in runs}
    summaries = reader.metric_summaries(list(parents))
    out: dict[str, Choice] = {}
    for cell in spec.tuning_cells():
        metric = primary_metric(cell.config.to_dict())
        base = {k: v for k, v in cell.values.items() if k not in spec.tune_axes and k != STAGE_KEY}
        group = group_key(base)
        choice = out.setdefault(group, Choice(group, metric, [], None))
        pick = {k: cell.values[k] for k in spec.tune_axes}
        state, run = states.get(cell.key, ("pending", None))
        best = None
        if run is not None and state == "completed":
            chain, rid = [], run.run_id
            while rid is not None and rid in parents:
                chain.append(rid)
                rid = parents[rid]
            for rid in chain:
                s = summaries.get(rid, {}).get(metric)
                if s is not None and is_better(metric, s.best, best):
                    best = s.best
        choice.points.append((pick, state, best))
    for choice in out.values():
        if any(state not in ("completed", "diverged") for _, state, _ in choice.points):
            continue
        best_value = None
        for pick, _, value in choice.points:
            if is_better(choice.metric, value, best_value):
                best_value, choice.values = value, pick
        if choice.values is None:  # every grid point diverged or logged nothing: the first one, said so
            choice.values = choice.points[0][0]
    return out


def plan(reader: Any, sweep_id: int, cells: list[Cell], *, mine: set[str] | frozenset = frozenset()) -> list[Task]:
    """One Task per cell, from the cell's runs and claim in the journal (table in the module docstring);
    ``mine``: the tokens of claims this process holds (not another's)."""
    from fastpose.journal.sweeps import cell_claims, cell_runs, cell_states, holder_gone

    states = cell_states(cell_runs(reader, sweep_id))
    claims = cell_claims(reader, sweep_id)
    tasks = []
    for cell in cells:
        found = states.get(cell.key)
        status, run = found if found is not None else (None, None)
        if status in ("completed", "diverged"):
            tasks.append(Task(cell, "skip", reason=f"{status} (run #{run.run_id})", state=status, run_id=run.run_id))
            continue
        claim = claims.get(cell.key)
        if claim is not None and claim.token not in mine and holder_gone(claim) is None:
            tasks.append(Task(cell, "wait", reason=f"held by {claim.holder}", state="waiting",
                              run_id=run.run_id if run is not None else None))
            continue
        if status == "running":
            tasks.append(Task(cell, "wait", reason=f"run #{run.run_id} is running", state="waiting", run_id=run.run_id))
            continue
        if found is None:
            tasks.append(Task(cell, "train", reason="new"))
            continue
        ckpt = Path(run.run_dir) / "checkpoints" / "last.ckpt" if run.run_dir else None
        if ckpt is not None and ckpt.is_file():
            tasks.append(Task(cell, "resume", parent_id=run.run_id, reason=f"{status} run #{run.run_id}: resume"))
        else:
            tasks.append(Task(cell, "train", reason=f"{status} run #{run.run_id} left no checkpoint: start again"))
    return tasks


def plan_fresh(store: Any, sweep_id: int, cells: list[Cell], *, mine: set[str] | frozenset = frozenset()) -> list[Task]:
    """``plan`` after marking lost the runs whose process is gone (they are continued, not waited for)."""
    store.mark_lost()
    return plan(store, sweep_id, cells, mine=mine)


def cell_command(spec: SweepSpec, sweep_id: int, task: Task, cell_dir: Path) -> list[str]:
    """The ``fastpose`` command line of a task (``train`` with the cell's config file, or ``resume``)."""
    exe = [sys.executable, "-m", "fastpose"]
    if task.action == "resume":
        return [*exe, "resume", str(task.parent_id), "--note", f"sweep {spec.id}: continuing the cell"]
    cell_dir.mkdir(parents=True, exist_ok=True)
    path = cell_dir / f"{task.cell.name}.toml"
    path.write_text(cell_toml(task.cell.config), encoding="utf-8")
    tags = [arg for tag in spec.tags for arg in ("--tag", tag)]
    cell = json.dumps({"sweep": sweep_id, "cell": task.cell.values}, sort_keys=True)
    return [*exe, "train", "--config", str(path), "--no-progress", "--sweep-cell", cell, *tags]


def sweep_dir(spec: SweepSpec) -> Path:
    from fastpose.journal.db import journal_home

    return journal_home() / "sweeps" / spec.id


def settle(task: Task, code: int, log: Path | None, link: SweepJournal, stopping: bool) -> str:
    """A cell's process ended with ``code``: ``"again"`` (start it again now or at ``task.not_before``, the
    claim kept) or ``"done"`` (state set from the exit code until the journal is read; claim released)."""
    task.exit_code = code
    if code == NOT_STARTED and not stopping:
        if task.action == "resume":  # refused (e.g. the checkpoint holds every epoch): train the cell again
            task.action, task.state = "train", "pending"
            task.reason = f"resume of run #{task.parent_id} refused: start again"
            return "again"
        error = last_error(log) if log is not None else "exit 2"
        delay = link.retry_delay(task)
        if delay is not None:
            task.state, task.reason = "retrying", f"not started ({error}); again in {delay:.1f} s"
            task.not_before = time.monotonic() + delay
            return "again"
        task.state, task.reason = "failed to start", error
    elif code == NOT_STARTED:
        task.state = "failed to start"
    else:
        task.state = EXIT_STATES.get(code, "crashed")
    link.release(task)
    return "done"


def finish_sweep(table: Any, tasks: list[Task], stopping: dict[str, Any]) -> int:
    """Both launchers' last step: the summary, then the exit code (128 + signal when stopped by one,
    0 when every cell completed, else 1)."""
    table.summary()
    if stopping["signal"] is not None:
        return 128 + int(stopping["signal"])
    return 0 if all(t.state == "completed" for t in tasks) else 1


UNSTARTED = ("pending", "waiting", "retrying", "failed to start")  # no run of this sweep's to show


CLOCK_SLACK = timedelta(seconds=2)  # the run's start is stamped by the cell's clock: the same machine


def follow(url: str, sweep_id: int, tasks: list[Task], metric: str) -> dict[str, tuple[int | None, float | None]]:
    """Each started task's newest run from the journal (a read, never a write): sets its ``run_id`` and, once its
    process has ended, the state the run journaled; returns ``{cell: (epoch, final value of metric)}``."""
    from fastpose.journal.access import open_reader
    from fastpose.journal.sweeps import cell_runs, cell_states

    values: dict[str, tuple[int | None, float | None]] = {}
    try:
        reader = open_reader(url)
    except Exception:  # noqa: BLE001 - the table is a courtesy; the cells journal themselves
        return values
    if reader is None:
        return values
    try:
        states = cell_states(cell_runs(reader, sweep_id))
        ids = [run.run_id for _, run in states.values()]
        summaries = reader.metric_summaries(ids)
    except Exception:  # noqa: BLE001
        return values
    finally:
        reader.close()
    for task in tasks:
        found = states.get(task.cell.key)
        if found is None or task.state in UNSTARTED:
            continue  # not started by this sweep (yet): an older attempt is not this task's run
        status, run = found
        if task.launched_at is not None and run.started_at < task.launched_at - CLOCK_SLACK:
            continue  # the attempt this sweep started has no run (yet)
        task.run_id = run.run_id
        if task.action != "skip" and task.exit_code is not None:
            task.state = status  # finished: what the run journaled
        s = summaries.get(run.run_id, {}).get(metric)
        values[task.cell.key] = (run.epoch, None if s is None else s.final)
    return values
