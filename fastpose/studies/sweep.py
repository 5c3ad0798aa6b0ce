"""``fastpose sweep``: plan a sweep's cells against the journal and run them (locally or on SLURM).

Planning (``plan``), from each cell's runs in the journal (``fastpose.journal.sweeps``):

| the cell's state              | what the sweep does                                              |
| ----------------------------- | ---------------------------------------------------------------- |
| no run yet                    | ``fastpose train --config <cell>.toml`` (a fresh run)             |
| completed (any of its runs)   | skip                                                             |
| running (process alive)       | skip: another sweep process is running it                        |
| crashed, interrupted, lost    | ``fastpose resume RUN`` from its last.ckpt (fresh if it has none) |
| diverged                      | skip: a NaN loss is a result, not an accident; counted as failed |

Lost runs are marked first (``mark_lost``), so a cell whose process was killed is continued. A cell is
always a subprocess of the real CLI: the same code path as ``fastpose train``, and a crash in one cell
cannot take the sweep down.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastpose.errors import FastposeError
from fastpose.studies.spec import STAGE_KEY, Cell, SweepSpec, cell_toml, describe_values, load_sweep

LAUNCHERS = ("local", "slurm")


@dataclass
class Task:
    """What the sweep does with one cell, and (while it runs) how it goes."""

    cell: Cell
    action: str  # train | resume | skip
    parent_id: int | None = None  # resume: the run continued
    reason: str = ""
    state: str = "pending"  # pending | running | completed | crashed | interrupted | diverged | lost | skipped
    run_id: int | None = None
    exit_code: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def sweep_command(
    file: Path | None,
    *,
    jobs: int = 1,
    launcher: str = "local",
    dry_run: bool = False,
    resume: str | None = None,
) -> int:
    """The whole command; returns the exit code (0: every cell completed)."""
    if (file is None) == (resume is None):
        raise FastposeError("give a sweep FILE.toml, or --resume SWEEP (not both)")
    if jobs < 1:
        raise FastposeError(f"--jobs must be >= 1, got {jobs}")
    if launcher not in LAUNCHERS:
        raise FastposeError(f"--launcher {launcher!r}: choose one of {', '.join(LAUNCHERS)}")
    from fastpose.journal.db import journal_url, sqlite_path

    url = journal_url()
    if launcher == "slurm" and sqlite_path(url) is not None:
        raise FastposeError(
            "--launcher slurm needs a PostgreSQL journal (set FASTPOSE_JOURNAL_URL): SQLite's file locks do not "
            "hold on the network file systems cluster nodes share, so jobs on several nodes would corrupt it"
        )
    spec = load_sweep(file) if file is not None else _spec_from_journal(resume)
    if dry_run:
        _print_cells(spec, spec.tuning_cells() if spec.tune_axes else spec.cells())
        if spec.tune_axes:
            from fastpose.journal.sweeps import SEED_KEYS

            seeds = 1
            for key in SEED_KEYS:
                seeds *= len(spec.axes.get(key, [None]))
            print(f"then, per group ({len(spec.group_order())}), {seeds} seed cell(s) at the tuning values "
                  f"the tune split chooses: {len(spec.group_order()) * seeds} more cells")
        return 0

    from fastpose.journal.store import JournalStore
    from fastpose.journal.sweeps import open_sweep

    with JournalStore.open(url) as store:
        record = open_sweep(store, spec.id, spec.to_json(), spec.source)
    if spec.tune_axes:  # stage 1: the tuning cells; stage 2 needs all of them
        code = _launch(spec, record.id, spec.tuning_cells(), launcher, jobs, url)
        if code != 0:
            return code
        with JournalStore.open(url) as store:
            choice = choose(store, record.id, spec)
        print_choice(spec, choice)
        cells = spec.cells({g: c.values for g, c in choice.items() if c.values is not None})
    else:
        cells = spec.cells()
    return _launch(spec, record.id, cells, launcher, jobs, url)


def _launch(spec: SweepSpec, sweep_id: int, cells: list[Cell], launcher: str, jobs: int, url: str) -> int:
    from fastpose.journal.store import JournalStore

    with JournalStore.open(url) as store:
        store.mark_lost()
        tasks = plan(store, sweep_id, cells)
    if launcher == "local":
        from fastpose.studies.local import run_local

        return run_local(spec, sweep_id, tasks, jobs=jobs, url=url)
    from fastpose.studies.slurm import run_slurm

    return run_slurm(spec, sweep_id, tasks, url=url)


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
    from fastpose.journal.metrics import is_better, primary_metric
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


def print_choice(spec: SweepSpec, choice: dict[str, Choice]) -> None:
    """The tuning stage's table: per group, each grid point's best primary-metric value; the chosen marked."""
    from rich.table import Table
    from rich.text import Text

    from fastpose.journal.sweeps import describe
    from fastpose.journal.views import fmt_value
    from fastpose.text import safe_console

    metric = next(iter(choice.values())).metric if choice else ""
    table = Table(title=f"sweep {spec.id}: tuning on the tune split ({metric}, best over epochs)",
                  title_justify="left")
    table.add_column("group")
    for axis in spec.tune_axes:
        table.add_column(axis, justify="right")
    table.add_column(metric, justify="right")
    table.add_column("")
    for c in choice.values():
        for pick, state, value in c.points:
            mark = "chosen" if pick == c.values else ("" if state == "completed" else state)
            table.add_row(Text(describe(c.group)), *[Text(str(pick[a])) for a in spec.tune_axes],
                          "-" if value is None else fmt_value(value), Text(mark, style="bold" if mark == "chosen" else "dim"))
    safe_console(stderr=True).print(table)


def _spec_from_journal(ref: str | None) -> SweepSpec:
    from fastpose.journal.reader import open_reader
    from fastpose.journal.sweeps import get_sweep

    reader = open_reader()
    if reader is None:
        raise FastposeError(f"no journal yet, so no sweep {ref!r} to resume")
    try:
        record = get_sweep(reader, str(ref))
    finally:
        reader.close()
    return SweepSpec.from_json(record.name, record.spec, record.source)


def plan(reader: Any, sweep_id: int, cells: list[Cell]) -> list[Task]:
    """One Task per cell, from the cell's runs in the journal (table in the module docstring)."""
    from fastpose.journal.sweeps import cell_runs, cell_states

    states = cell_states(cell_runs(reader, sweep_id))
    tasks = []
    for cell in cells:
        found = states.get(cell.key)
        if found is None:
            tasks.append(Task(cell, "train", reason="new"))
            continue
        status, run = found
        if status in ("completed", "running", "diverged"):
            tasks.append(Task(cell, "skip", reason=f"{status} (run #{run.run_id})", state=status, run_id=run.run_id))
            continue
        ckpt = Path(run.run_dir) / "checkpoints" / "last.ckpt" if run.run_dir else None
        if ckpt is not None and ckpt.is_file():
            tasks.append(Task(cell, "resume", parent_id=run.run_id, reason=f"{status} run #{run.run_id}: resume"))
        else:
            tasks.append(Task(cell, "train", reason=f"{status} run #{run.run_id} left no checkpoint: start again"))
    return tasks


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


def _print_cells(spec: SweepSpec, cells: list[Cell]) -> None:
    from rich.table import Table
    from rich.text import Text

    from fastpose.journal.sweeps import describe

    table = Table(title=f"sweep {spec.id}: {len(cells)} cells (dry run: nothing started, nothing written)",
                  title_justify="left")
    for col in ("#", "run NAME", "group", "axis values"):
        table.add_column(col)
    for i, cell in enumerate(cells, 1):
        table.add_row(str(i), Text(cell.name), Text(describe(cell.group)), Text(describe_values(cell.values)))
    from fastpose.text import safe_console

    safe_console().print(table)



def finish_sweep(table: Any, tasks: list[Task], stopping: dict[str, Any]) -> int:
    """Both launchers' last step: the summary, then the exit code (128 + signal when stopped by one,
    0 when every cell completed, else 1)."""
    table.summary()
    if stopping["signal"] is not None:
        return 128 + int(stopping["signal"])
    return 0 if all(t.state == "completed" for t in tasks) else 1
