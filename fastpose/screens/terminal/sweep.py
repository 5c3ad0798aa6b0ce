"""Sweeps on the terminal: the live table of a running sweep, the dry run's cells, the tuning stage's choice,
and the overview of every sweep (``journal sweeps``). ``fastpose.cli.sweep`` hands the first three to the
launchers (``fastpose.studies.sweep.SweepHooks``)."""

from __future__ import annotations

import sys
from typing import Any

from fastpose.screens.format import STATUS_STYLE, fmt_value
from fastpose.screens.terminal.console import safe_console
from fastpose.studies.plan import Choice, Task
from fastpose.studies.spec import Cell, SweepSpec, describe_values


class LiveTable:
    """``with LiveTable(...) as t: t.refresh_from_journal(); t.update()``; ``summary()`` after."""

    def __init__(self, spec: SweepSpec, sweep_id: int, tasks: list[Task], url: str, header: str = "") -> None:
        from fastpose.screens.format import primary_metric

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
        """Each cell's newest run: id, status, epoch and final primary metric (``studies.plan.follow``)."""
        from fastpose.studies.plan import follow

        self.values.update(follow(self.url, self.sweep_id, self.tasks, self.metric))

    def render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        from fastpose.journal.sweeps import describe

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


def print_cells(spec: SweepSpec, cells: list[Cell]) -> None:
    from rich.table import Table
    from rich.text import Text

    from fastpose.journal.sweeps import describe

    table = Table(title=f"sweep {spec.id}: {len(cells)} cells (dry run: nothing started, nothing written)",
                  title_justify="left")
    for col in ("#", "run NAME", "group", "axis values"):
        table.add_column(col)
    for i, cell in enumerate(cells, 1):
        table.add_row(str(i), Text(cell.name), Text(describe(cell.group)), Text(describe_values(cell.values)))
    safe_console().print(table)


def print_choice(spec: SweepSpec, choice: dict[str, Choice]) -> None:
    """The tuning stage's table: per group, each grid point's best primary-metric value; the chosen marked."""
    from rich.table import Table
    from rich.text import Text

    from fastpose.journal.sweeps import describe

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


def render_sweeps(rows: list[dict], console: Any) -> None:
    """The overview (``fastpose.screens.sweep.sweep_overview``) as a table."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="sweeps", title_justify="left")
    for col in ("sweep", "created", "cells", "completed", "running", "failed", "pending", "axes"):
        table.add_column(col, justify="right" if col in ("cells", "completed", "running", "failed", "pending") else "left")
    for row in rows:
        table.add_row(
            Text(row["sweep"]), row["created"][:16].replace("T", " "), str(row["cells"]), str(row["completed"]),
            str(row["running"]), Text(str(row["failed"]), style="red" if row["failed"] else ""), str(row["pending"]),
            Text(", ".join(f"{k} × {len(v)}" for k, v in row["axes"].items())),
        )
    console.print(table)
