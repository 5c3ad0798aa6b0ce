"""``fastpose reproduce --check`` on the terminal: one line when every number is identical, else a table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastpose.screens.format import fmt_value
from fastpose.screens.terminal.console import lit

if TYPE_CHECKING:
    from rich.console import Console

MAX_ROWS = 40


def render_check(result: Any, console: Console) -> None:
    """``reproduced: N of N numbers identical``, or that line and the numbers that differ (metric, epoch,
    step, original, reproduced, difference), at most ``MAX_ROWS`` of them."""
    from rich.table import Table
    from rich.text import Text

    console.print(Text(f"reproduced: {result.identical} of {result.total} numbers identical",
                       style="bold green" if not result.differences else "bold red"))
    if not result.differences:
        return
    table = Table(title=f"{len(result.differences)} numbers differ", title_justify="left", box=None, pad_edge=False)
    for col in ("metric", "epoch", "step", "original", "reproduced", "difference"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for d in result.differences[:MAX_ROWS]:
        delta = d.delta
        table.add_row(lit(d.name), "-" if d.epoch is None else str(d.epoch), "-" if d.step is None else str(d.step),
                      "missing" if d.original is None else fmt_value(d.original),
                      "missing" if d.reproduced is None else fmt_value(d.reproduced),
                      "-" if delta is None else f"{delta:+.3g}")
    console.print(table)
    if len(result.differences) > MAX_ROWS:
        console.print(Text(f"... and {len(result.differences) - MAX_ROWS} more", style="dim"))
