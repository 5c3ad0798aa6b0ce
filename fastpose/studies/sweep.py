"""``fastpose sweep``: plan a sweep's cells against the journal and run them (locally or on SLURM).

Planning (``plan``), from each cell's runs and claim in the journal (``fastpose.journal.sweeps``):

| the cell's state                        | what the sweep does                                              |
| --------------------------------------- | ---------------------------------------------------------------- |
| no run yet                              | ``fastpose train --config <cell>.toml`` (a fresh run)             |
| completed (any of its runs)             | skip                                                             |
| diverged                                | skip: a NaN loss is a result, not an accident; counted as failed |
| claimed by another live process         | wait: it is running the cell; its result is this sweep's too     |
| running without a claim (process alive) | wait: started by hand, or by a sweep killed a moment ago         |
| crashed, interrupted, lost              | ``fastpose resume RUN`` from its last.ckpt (fresh if it has none) |

A cell is run only by the process that claims it (``claim_cell``): each launcher claims a cell right before
it starts it, then plans that cell again (another process may have finished it meanwhile), and gives the
claim back when the cell's process ends. So two sweeps of one file share the cells instead of training each
twice, and a sweep that waits takes over a cell whose holder died. Lost runs are marked first
(``mark_lost``), so a cell whose process was killed is continued. A cell is always a subprocess of the real
CLI: the same code path as ``fastpose train``, and a crash in one cell cannot take the sweep down.

A cell whose process ends with exit code 2 wrote nothing (``train``'s contract: bad input, or a journal it
could not open). The sweep starts it again with backoff for up to ``$FASTPOSE_BUSY_TIMEOUT_S`` after the
first such exit, then reports it ``failed to start`` with the cell's error line. The sweep's own journal
calls are retried the same way (``SweepJournal``).

Before anything is written (``--dry-run`` included), every cell is checked as ``train`` checks a config
(``spec.check_cells``) and Lightning judges each distinct trainer setting once (``check_trainer``).

This package draws nothing and imports no Lightning: the command line hands ``sweep_command`` its
``SweepHooks`` (the terminal's live table, dry-run list and tuning table; ``train``'s check of trainer
settings), so the layers stay one-way (docs/ARCHITECTURE.md, "Layers").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fastpose.config import ConfigError
from fastpose.errors import FastposeError
from fastpose.studies.plan import SweepJournal, choose, plan_fresh
from fastpose.studies.spec import Cell, SweepSpec, check_cells, describe_values, load_sweep


LAUNCHERS = ("local", "slurm")


@dataclass(frozen=True)
class SweepHooks:
    """What a sweep draws, and how a trainer setting is judged; given by ``fastpose.cli.sweep``.

    ``table(spec, sweep_id, tasks, url, header=...)``: the live table, a context manager with ``update()``,
    ``refresh_from_journal()``, ``summary()``, ``live`` and a settable ``header``. ``cells(spec, cells)``: the
    dry run's list. ``choice(spec, choice)``: the tuning stage's table. ``check_settings(config,
    on_this_machine=...)``: raises ``ConfigError`` for a setting Lightning refuses."""

    table: Callable[..., Any]
    cells: Callable[..., None]
    choice: Callable[..., None]
    check_settings: Callable[..., None]


def sweep_command(
    file: Path | None,
    *,
    jobs: int = 1,
    launcher: str = "local",
    dry_run: bool = False,
    resume: str | None = None,
    hooks: SweepHooks,
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
    where = f"sweep file {file.name}" if file is not None else f"sweep {spec.id} (from the journal)"
    check_trainer(spec, where, hooks.check_settings, on_this_machine=launcher == "local")
    if dry_run:
        hooks.cells(spec, spec.tuning_cells() if spec.tune_axes else spec.cells())
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
        code = _launch(spec, record.id, spec.tuning_cells(), launcher, jobs, url, hooks)
        if code != 0:
            return code
        with JournalStore.open(url) as store:
            choice = choose(store, record.id, spec)
        hooks.choice(spec, choice)
        cells = spec.cells({g: c.values for g, c in choice.items() if c.values is not None})
    else:
        cells = spec.cells()
    return _launch(spec, record.id, cells, launcher, jobs, url, hooks)


def _launch(spec: SweepSpec, sweep_id: int, cells: list[Cell], launcher: str, jobs: int, url: str,
            hooks: SweepHooks) -> int:
    with SweepJournal(url, sweep_id) as link:
        tasks = link.call(lambda store: plan_fresh(store, sweep_id, cells))
        if launcher == "local":
            from fastpose.studies.local import run_local

            return run_local(spec, sweep_id, tasks, jobs=jobs, url=url, link=link, make_table=hooks.table)
        from fastpose.studies.slurm import run_slurm

        return run_slurm(spec, sweep_id, tasks, url=url, link=link, make_table=hooks.table)


def check_trainer(spec: SweepSpec, where: str, check_settings: Callable[..., None], *,
                  on_this_machine: bool = True) -> None:
    """Lightning's verdict on every distinct trainer setting of the sweep's cells, as ``train`` asks it before
    it writes anything (``runner.check_trainer_settings``): Lightning is imported once, here, not per cell.
    ``on_this_machine=False`` (cluster jobs): only what does not depend on this machine's hardware."""
    from fastpose.config import TrainConfig
    from fastpose.studies.spec import every_cell

    def setting(t: TrainConfig) -> tuple:
        return t.accelerator, t.devices, t.strategy, t.num_nodes, t.precision

    settings: dict[tuple, Cell] = {}
    for cell in every_cell(spec):
        settings.setdefault(setting(cell.config.train), cell)
    settings.pop(setting(TrainConfig()), None)  # one CPU process: what Lightning accepts on any machine
    if not settings:
        return  # nothing to ask, so the sweep process never imports Lightning
    for cell in settings.values():
        try:
            check_settings(cell.config, on_this_machine=on_this_machine)
        except ConfigError as exc:
            raise ConfigError(f"{where}: cell {describe_values(cell.values)}: {exc}") from None


def _spec_from_journal(ref: str | None) -> SweepSpec:
    from fastpose.journal.access import open_reader
    from fastpose.journal.sweeps import get_sweep

    reader = open_reader()
    if reader is None:
        raise FastposeError(f"no journal yet, so no sweep {ref!r} to resume")
    try:
        record = get_sweep(reader, str(ref))
    finally:
        reader.close()
    spec = SweepSpec.from_json(record.name, record.spec, record.source)
    check_cells(spec, f"sweep {record.name} (from the journal)")  # a data root or weights file may be gone
    return spec
