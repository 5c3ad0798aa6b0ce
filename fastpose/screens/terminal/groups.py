"""Groups of runs on the terminal (``compare --sweep ID``, ``compare --by KEY``, ``compare --tuning``): per
group n, mean ± sd and [min, max] of the headline metrics (``--per-class``: all); the primary metric's verdicts.

One table, a group per row and a metric per column, when it fits the width; otherwise turned, a metric per
row and a group per column (and, with more groups than the width holds, several such tables, each with as
many groups as fit). Nothing is cut: a metric's name and every value stay whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastpose.screens.format import direction, fmt_value
from fastpose.screens.groups import Group, GroupComparison
from fastpose.studies.stats import TEST_NAME, Summary

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def render(cmp: GroupComparison, console: Console, *, per_class: bool = False) -> None:
    from rich.text import Text

    from fastpose.screens.terminal.console import fits, lit

    shown = cmp.shown_metrics(per_class)
    best = {name: cmp.best(name) for name in shown}
    console.print(lit(f"{cmp.title}: final values per group (mean ± sd, [min, max]; ★ = best mean, where "
                      "comparable)"))
    wide = _wide(cmp, shown, best)
    if fits(console, wide):
        console.print(wide)
    else:
        groups = list(cmp.groups)
        while groups:  # as many groups side by side as the width holds (at least one)
            take = len(groups)
            while take > 1 and not fits(console, _turned(cmp, shown, best, groups[:take])):
                take -= 1
            console.print(_turned(cmp, shown, best, groups[:take]))
            groups = groups[take:]
    hidden = len([m for m in cmp.metrics if any(cmp.summary(g, m).n for g in cmp.groups)]) - len(shown)
    if hidden:
        console.print(Text(f"{hidden} more metrics (losses, per class) not shown: --per-class lists them; --json "
                           "and --csv have every metric", style="dim"))
    contrasts = cmp.contrasts()
    if contrasts:
        console.print(Text(f"Primary metric {cmp.primary}: best group vs each other, {TEST_NAME}, on each run's "
                           f"final value; 95 % confidence interval of the difference (best − other); p not corrected "
                           f"for the {len(contrasts)} comparison(s).", style="dim"))
    else:
        console.print(lit(f"No verdict on {cmp.primary}: {cmp.no_verdict()}."))
    for c in contrasts:
        console.print(lit(f"• {c.verdict}"))
    for line in cmp.left_out:
        console.print(lit(f"left out: {line}", "yellow"))


def _heading(cmp: GroupComparison, name: str) -> Any:
    from rich.text import Text

    arrow = "↓" if direction(name) == "min" else "↑"
    mark = "" if cmp.comparable(name) else " (not comparable)"
    return Text(f"{name} {arrow}{mark}", style="bold" if name == cmp.primary else "")


def _wide(cmp: GroupComparison, shown: list[str], best: dict[str, Group | None]) -> Table:
    """A group per row, a metric per column."""
    from rich.table import Table

    from fastpose.screens.terminal.console import lit

    table = Table(box=None, pad_edge=False)
    table.add_column("group", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    for name in shown:
        table.add_column(_heading(cmp, name), justify="right", no_wrap=True)
    for group in cmp.groups:
        table.add_row(lit(group.label), str(len(group.runs)),
                      *(_stat_cell(cmp.summary(group, name), best[name] is group, len(group.runs)) for name in shown))
    return table


def _turned(cmp: GroupComparison, shown: list[str], best: dict[str, Group | None], groups: list[Group]) -> Table:
    """A metric per row, a group per column (its label and n in the heading)."""
    from rich.table import Table

    from fastpose.screens.terminal.console import lit

    table = Table(box=None, pad_edge=False)
    table.add_column("metric", no_wrap=True)
    for group in groups:
        heading = lit(group.label)
        heading.append(f"\nn = {len(group.runs)}", style="dim")
        table.add_column(heading, justify="right", no_wrap=True)
    for name in shown:
        table.add_row(_heading(cmp, name),
                      *(_stat_cell(cmp.summary(group, name), best[name] is group, len(group.runs)) for group in groups))
    return table


def _stat_cell(s: Summary, is_best: bool, runs: int) -> Any:
    from rich.text import Text

    if not s.n:
        return Text("-", style="dim")
    text = Text(f"{fmt_value(s.mean)} ± {fmt_value(s.sd) if s.n > 1 else '-'}", style="bold green" if is_best else "")
    if is_best:
        text.append(" ★", style="bold green")
    text.append(f"\n[{fmt_value(s.min)}, {fmt_value(s.max)}]", style="dim")
    if s.n != runs:
        text.append(f" (n={s.n})", style="dim")
    return text
