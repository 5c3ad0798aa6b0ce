"""Groups of runs on the terminal (``compare --sweep ID``, ``compare --by KEY``, ``compare --tuning``): per
group n, mean ± sd and [min, max]; the primary metric's verdicts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastpose.screens.format import direction, fmt_value
from fastpose.screens.groups import METRICS_PER_TABLE, GroupComparison
from fastpose.studies.stats import TEST_NAME, Summary

if TYPE_CHECKING:
    from rich.console import Console


def render(cmp: GroupComparison, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    shown = [m for m in cmp.metrics if any(cmp.summary(g, m).n for g in cmp.groups)]
    if cmp.primary in shown:  # the primary metric first, then the rest in their usual order
        shown.remove(cmp.primary)
        shown.insert(0, cmp.primary)
    best = {name: cmp.best(name) for name in shown}
    for start in range(0, max(1, len(shown)), METRICS_PER_TABLE):  # narrow tables rather than one too wide
        chunk = shown[start : start + METRICS_PER_TABLE]
        title = (f"{cmp.title}: final values per group (mean ± sd, [min, max]; ★ = best mean, where comparable)"
                 if start == 0 else None)
        table = Table(title=Text(title) if title else None, title_justify="left")
        table.add_column("group")
        table.add_column("n", justify="right")
        for name in chunk:
            arrow = "↓" if direction(name) == "min" else "↑"
            mark = "" if cmp.comparable(name) else " (not comparable)"
            table.add_column(Text(f"{name} {arrow}{mark}", style="bold" if name == cmp.primary else ""),
                             justify="right")
        for group in cmp.groups:
            cells: list[Any] = [Text(group.label), str(len(group.runs))]
            for name in chunk:
                cells.append(_stat_cell(cmp.summary(group, name), best[name] is group, len(group.runs)))
            table.add_row(*cells)
        console.print(table)
    contrasts = cmp.contrasts()
    if contrasts:
        console.print(Text(f"Primary metric {cmp.primary}: best group vs each other, {TEST_NAME}, on each run's "
                           f"final value; 95 % confidence interval of the difference (best − other); p not corrected "
                           f"for the {len(contrasts)} comparison(s).", style="dim"))
    else:
        reason = ("not comparable across these runs" if not cmp.comparable(cmp.primary)
                  else "fewer than two groups have values")
        console.print(Text(f"No verdict on {cmp.primary}: {reason}."))
    for c in contrasts:
        console.print(Text(f"• {c.verdict}"))
    for line in cmp.left_out:
        console.print(Text(f"left out: {line}", style="yellow"))


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
