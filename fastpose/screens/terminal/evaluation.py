"""Evaluations on the terminal: the NOCS table of ``fastpose eval`` and the run's evaluations in
``journal show``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from fastpose.journal.evaluations import EvaluationRecord
from fastpose.screens.evaluation import SHOWN, EvaluationTable

if TYPE_CHECKING:
    from rich.console import Console


def render_table(table_data: EvaluationTable, console: Console) -> None:
    """The NOCS-format table: one row per class with ground truth and the mean; APs in percent."""
    from rich.table import Table
    from rich.text import Text

    console.print(Text(table_data.title))
    table = Table()
    table.add_column("class")
    for _, head in table_data.columns:
        table.add_column(head, justify="right")
    for name, cells in table_data.rows:
        table.add_row(name, *("-" if v != v else f"{100 * v:.1f}" for v in cells),
                      style="bold" if name == "mean" else None)
    console.print(table)
    console.print(Text(f"rotation-only AP (5°, 10°, 20°): {' / '.join(_pct(v) for v in table_data.rotation_only)}"))
    for label, value in table_data.lines:
        console.print(Text(f"{label}: {_num(value)}"))


def _pct(v: float | None) -> str:
    return "-" if v is None or v != v else f"{100 * v:.1f}"


def _num(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.3g}"


def render_evaluations(records: list[EvaluationRecord], console: Any) -> None:
    """A run's evaluations (``journal show``); nothing when it has none. One row per evaluation where the
    table fits the width; otherwise turned: one row per metric, one column per evaluation, so no value or
    name is cut."""
    if not records:
        return
    from rich.table import Table
    from rich.text import Text

    from fastpose.screens.terminal.console import fits, lit

    title = "evaluations (NOCS mean AP; rates over all ground truth / all detections)"

    def value(r: EvaluationRecord, k: str) -> str:
        v = r.metrics.get(k, math.nan)
        return "-" if v != v else f"{v:.3f}"

    def when(r: EvaluationRecord) -> str:
        return f"{r.created_at.astimezone():%Y-%m-%d %H:%M}"

    table = Table(box=None, pad_edge=False)
    for col in ("#", "when", "checkpoint", "split", "images", *SHOWN):
        table.add_column(col, justify="right" if col not in ("when", "checkpoint", "split") else "left", no_wrap=True)
    for r in records:
        table.add_row(str(r.id), when(r), lit(r.checkpoint.rsplit("/", 1)[-1]), lit(f"{r.split} ({r.dataset})"),
                      str(r.num_images), *(value(r, k) for k in SHOWN))
    console.print(Text(title, style="bold"))
    if fits(console, table):
        console.print(table)
        return
    turned = Table(box=None, pad_edge=False)
    turned.add_column("", no_wrap=True)
    for r in records:
        turned.add_column(Text(f"#{r.id}"), justify="right", overflow="fold")
    for key, cell in (("when", when), ("checkpoint", lambda r: r.checkpoint.rsplit("/", 1)[-1]),
                      ("split", lambda r: f"{r.split} ({r.dataset})"), ("images", lambda r: str(r.num_images))):
        turned.add_row(key, *(lit(cell(r)) for r in records))
    for k in SHOWN:
        turned.add_row(k, *(value(r, k) for r in records))
    console.print(turned)
