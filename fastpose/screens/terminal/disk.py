"""Disk use on the terminal (``fastpose journal du``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastpose.journal.du import PARTS
from fastpose.screens.disk import DiskReport
from fastpose.screens.format import fmt_bytes
from fastpose.screens.terminal.console import lit

if TYPE_CHECKING:
    from rich.console import Console

HEADS = {"checkpoints": "checkpoints", "tensorboard": "TensorBoard", "logs": "logs", "other": "other"}


def render_disk(report: DiskReport, console: Console, limit: int | None = None) -> None:
    """Runs largest first (the ``limit`` largest), then sweeps, deleted runs, the journal and the total."""
    from rich.table import Table
    from rich.text import Text

    shown = report.runs[:limit] if limit else report.runs
    title = "disk use per run, largest first" + (f" ({len(shown)} of {len(report.runs)})" if len(shown) < len(report.runs) else "")
    table = Table(title=title, title_justify="left", title_style="bold", box=None, pad_edge=False)
    table.add_column("id", justify="right")
    table.add_column("run", overflow="fold")
    for part in PARTS:
        table.add_column(HEADS[part], justify="right", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True, style="bold")
    for row in shown:
        if not row.use.here:
            table.add_row(str(row.run.id), lit(row.run.label), *["-"] * len(PARTS),
                          Text("not here", style="dim"))
            continue
        table.add_row(str(row.run.id), lit(row.run.label), *(fmt_bytes(row.use.parts[p]) for p in PARTS),
                      fmt_bytes(row.use.total))
    console.print(table)
    if report.sweeps:
        sweeps = Table(title="per sweep (its runs and its folder of cell configs and logs)", title_justify="left",
                       title_style="bold", box=None, pad_edge=False)
        sweeps.add_column("sweep")
        sweeps.add_column("runs", justify="right")
        for part in PARTS:
            sweeps.add_column(HEADS[part], justify="right", no_wrap=True)
        sweeps.add_column("total", justify="right", no_wrap=True, style="bold")
        for name, n, use in report.sweeps:
            sweeps.add_row(lit(name), str(n), *(fmt_bytes(use.parts[p]) for p in PARTS), fmt_bytes(use.total))
        console.print(sweeps)
    if report.deleted_runs:
        console.print(Text(f"deleted runs (journal gc frees this): {report.deleted_runs} run(s), "
                           f"{fmt_bytes(report.deleted.total)}"))
    if report.not_here:
        console.print(Text(f"{report.not_here} run(s) have no directory on this machine", style="dim"))
    if report.journal_bytes is not None:
        console.print(Text(f"journal database: {fmt_bytes(report.journal_bytes)}"))
    parts = ", ".join(f"{HEADS[p]} {fmt_bytes(report.total.parts[p])}" for p in PARTS)
    total = report.total.total + (report.journal_bytes or 0)
    console.print(Text(f"total: {fmt_bytes(total)} ({parts}; {report.total.files} files, hard links counted once)",
                       style="bold"))
