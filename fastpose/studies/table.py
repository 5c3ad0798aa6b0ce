"""The live table of a running sweep: each cell's state, run, epoch and primary metric, read from the journal."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

from fastpose.studies.spec import SweepSpec
from fastpose.studies.sweep import Task

UNSTARTED = ("pending", "waiting", "retrying", "failed to start")  # no run of this sweep's to show
CLOCK_SLACK = timedelta(seconds=2)  # the run's start is stamped by the cell's clock: the same machine


class LiveTable:
    """``with LiveTable(...) as t: t.refresh_from_journal(); t.update()``; ``summary()`` after."""

    def __init__(self, spec: SweepSpec, sweep_id: int, tasks: list[Task], url: str, header: str = "") -> None:
        from fastpose.journal.metrics import primary_metric
        from fastpose.text import safe_console

        self.spec, self.sweep_id, self.tasks, self.url, self.header = spec, sweep_id, tasks, url, header
        self.metric = primary_metric(tasks[0].cell.config.to_dict()) if tasks else primary_metric()
        self.values: dict[str, Any] = {}
        self.console = safe_console()
        self._live: Any = None

    def __enter__(self) -> LiveTable:
        from rich.live import Live

        if self.console.is_terminal:
            self._live = Live(self.render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(*exc)
        else:
            self.console.print(self.render())

    @property
    def live(self) -> bool:
        """Whether the table is drawn live (a terminal); otherwise it is printed once, at the end."""
        return self._live is not None

    def update(self) -> None:
        if self._live is not None:
            self._live.update(self.render())

    def refresh_from_journal(self) -> None:
        """Each cell's newest run: id, status, epoch and final primary metric (a read, never a write)."""
        from fastpose.journal.reader import open_reader
        from fastpose.journal.sweeps import cell_runs, cell_states

        try:
            reader = open_reader(self.url)
        except Exception:  # noqa: BLE001 - the table is a courtesy; the cells journal themselves
            return
        if reader is None:
            return
        try:
            states = cell_states(cell_runs(reader, self.sweep_id))
            ids = [run.run_id for _, run in states.values()]
            summaries = reader.metric_summaries(ids)
        except Exception:  # noqa: BLE001
            return
        finally:
            reader.close()
        for task in self.tasks:
            found = states.get(task.cell.key)
            if found is None or task.state in UNSTARTED:
                continue  # not started by this sweep (yet): an older attempt is not this task's run
            status, run = found
            if task.launched_at is not None and run.started_at < task.launched_at - CLOCK_SLACK:
                continue  # the attempt this sweep started has no run (yet)
            task.run_id = run.run_id
            if task.action != "skip" and task.exit_code is not None:
                task.state = status  # finished: what the run journaled
            s = summaries.get(run.run_id, {}).get(self.metric)
            self.values[task.cell.key] = (run.epoch, None if s is None else s.final)

    def render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        from fastpose.journal.sweeps import describe
        from fastpose.journal.views import STATUS_STYLE, fmt_value

        done = sum(t.state == "completed" for t in self.tasks)
        table = Table(title=f"sweep {self.spec.id}: {done}/{len(self.tasks)} completed  ({self.header})",
                      title_justify="left")
        for col in ("cell", "group", "state", "run", "epoch", self.metric, "note"):
            table.add_column(col, justify="right" if col in ("run", "epoch", self.metric) else "left")
        for task in self.tasks:
            epoch, value = self.values.get(task.cell.key, (None, None))
            total = task.cell.config.train.epochs
            table.add_row(
                Text(task.cell.name), Text(describe(task.cell.group)),
                Text(task.state, style=STATUS_STYLE.get(task.state, "dim")),
                f"#{task.run_id}" if task.run_id else "-",
                "-" if epoch is None else f"{min(epoch + 1, total)}/{total}",
                "-" if value is None else fmt_value(value),
                Text(task.reason, style="dim"),
            )
        return table

    def summary(self) -> None:
        from collections import Counter

        counts = Counter(t.state for t in self.tasks)
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        print(f"sweep {self.spec.id}: {parts}. Compare the groups: fastpose compare --sweep {self.spec.id}",
              file=sys.stderr)
