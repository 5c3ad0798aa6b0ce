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
    """A run's evaluations as a table (``journal show``); nothing when it has none."""
    if not records:
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title="evaluations (NOCS mean AP; rates over all ground truth / all detections)", title_justify="left")
    for col in ("#", "when", "checkpoint", "split", "images", *SHOWN):
        table.add_column(col, justify="right" if col not in ("when", "checkpoint", "split") else "left")
    for r in records:
        cells = ["-" if r.metrics.get(k, math.nan) != r.metrics.get(k, math.nan) else f"{r.metrics[k]:.3f}"
                 for k in SHOWN]
        table.add_row(str(r.id), f"{r.created_at.astimezone():%Y-%m-%d %H:%M}", Text(r.checkpoint.rsplit("/", 1)[-1]),
                      Text(f"{r.split} ({r.dataset})"), str(r.num_images), *cells)
    console.print(table)
