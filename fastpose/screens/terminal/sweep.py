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
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        from fastpose.journal.sweeps import describe

        done = sum(t.state == "completed" for t in self.tasks)
        table = Table(title=f"sweep {self.spec.id}: {done}/{len(self.tasks)} completed  ({self.header})",
                      title_justify="left")
        # The cell's name, its state and its numbers are never cut or folded (the tests and a reader find a
        # cell by its name on one line); the group folds. Each cell's note (an error line can be long) is a
        # line of its own under the table, where the terminal wraps it and nothing is cropped.
        longest = max([len("cell")] + [len(t.cell.name) for t in self.tasks])
        table.add_column("cell", no_wrap=True, min_width=longest)
        table.add_column("group", overflow="fold")
        table.add_column("state", no_wrap=True, min_width=max([len(t.state) for t in self.tasks] + [5]))
        for col in ("run", "epoch", self.metric):
            table.add_column(col, justify="right", no_wrap=True)
        notes = Text()
        for task in self.tasks:
            epoch, value = self.values.get(task.cell.key, (None, None))
            total = task.cell.config.train.epochs
            table.add_row(
                Text(task.cell.name), Text(describe(task.cell.group)),
                Text(task.state, style=STATUS_STYLE.get(task.state, "dim")),
                f"#{task.run_id}" if task.run_id else "-",
                "-" if epoch is None else f"{min(epoch + 1, total)}/{total}",
                "-" if value is None else fmt_value(value),
            )
            if task.reason:
                notes.append(f"{task.cell.name}: ").append(task.reason, style="dim").append("\n")
        notes.rstrip()
        return Group(table, notes) if notes else table

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
    """The overview (``fastpose.screens.sweep.sweep_overview``): one line per sweep with its cell counts, its
    axes on the line under it. Every value is shown whole at any width (a long sweep id is broken after a
    ``-`` or ``/``; the axes wrap between axes)."""
    from rich.text import Text

    from fastpose.screens.terminal.console import break_lines, lit

    heads = ("sweep", "created", "cells", "completed", "running", "failed", "pending")
    counts = [[str(row[k]) for k in heads[2:]] for row in rows]
    created = [row["created"][:16].replace("T", " ") for row in rows]
    widths = [max([len(h)] + [len(c[i]) for c in counts]) for i, h in enumerate(heads[2:])]
    created_w = max([len(heads[1])] + [len(c) for c in created])
    fixed = created_w + sum(widths) + 2 * len(widths) + 2
    sweep_w = max([len(heads[0])] + [lit(row["sweep"]).cell_len for row in rows])
    sweep_w = max(len(heads[0]), min(sweep_w, console.width - fixed))

    def line(sweep: Text, rest: list[tuple[str, str]], style_failed: bool = False) -> Text:
        out = Text(no_wrap=True, overflow="ignore")
        out.append_text(sweep)
        out.append(" " * (sweep_w - sweep.cell_len + 2))
        for n, (cell, kind) in enumerate(rest):
            width = created_w if n == 0 else widths[n - 1]
            out.append(cell.ljust(width) if n == 0 else cell.rjust(width),
                       style="red" if kind == "failed" and style_failed and cell != "0" else "")
            out.append("  ")
        out.rstrip()
        return out

    console.print(Text("sweeps", style="bold"))
    console.print(line(Text(heads[0], style="dim"), [(h, h) for h in heads[1:]]), style="dim", soft_wrap=True)
    for row, when, cells in zip(rows, created, counts):
        names = break_lines(lit(row["sweep"]), sweep_w)
        console.print(line(names[0], [(when, "created"), *zip(cells, heads[2:])], style_failed=True), soft_wrap=True)
        for more in names[1:]:
            console.print(more, soft_wrap=True)
        axes = ", ".join(f"{k} × {len(v)}" for k, v in row["axes"].items())
        for piece in break_lines(lit(f"axes: {axes}", "dim"), console.width - 2):
            console.print(Text("  ") + piece, soft_wrap=True)
