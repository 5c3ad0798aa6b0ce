"""The daily log on the terminal: one line per run under its day, notes and the crash line wrapped under it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastpose.journal.records import RunRecord
from fastpose.screens.daily_log import ALWAYS, DailyLog
from fastpose.screens.format import (
    DEFAULT_MONITOR, STATUS_STYLE, differing_labels, direction, fmt_duration, fmt_value, last_traceback_line, local,
    run_primary, short_metric,
)
from fastpose.screens.terminal.console import break_lines, lit

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


OPTIONAL = ("val/loss", "train/loss", "best", "val/rot_err_median", "val/trans_err_median_cm")


WIDE = 120  # from here on, two spaces between columns


RUN_MIN = 20
RUN_FLOOR = 8  # the run column's narrowest width, however short the names


class _Column:
    """A column's header, justification and width: the widest of its header and cells, kept up to date as
    cells are added (measured once each, so drawing N runs costs O(N), not O(N) per line)."""

    def __init__(self, header: str, justify: str = "left") -> None:
        self.header, self.justify, self.width = header, justify, len(header)

    def add(self, cell: Text) -> None:
        self.width = max(self.width, cell.cell_len)


def render_daily_log(log: DailyLog, console: Console) -> None:
    """The daily log, one line per run, its notes and crash line wrapped under it.

    Time, id, status (whole), duration, the run's primary metric (its ``train.monitor``: final value) and the
    miss rate never wrap and are never cut; only the run column (NAME and what its label adds) folds, so the
    line fits the terminal at 80 columns. The ``OPTIONAL`` columns follow as far as the width allows.
    """
    from rich.text import Text

    if not log.runs and not log.day_notes:
        console.print(Text("No runs or notes in the journal match.", style="dim"))
        return
    width = console.width
    gap = 2 if width >= WIDE else 1
    runs = [r for day in log.ordered_days() for r in log.days.get(day, [])]
    primaries = {r.id: run_primary(r.config, log.summaries[r.id]) for r in runs}
    one_primary = len(set(primaries.values())) == 1
    shown = differing_labels(runs)

    def value(run: RunRecord, name: str, kind: str = "final") -> str:
        s = log.summaries[run.id].get(name)
        return "-" if s is None else fmt_value(getattr(s, kind))

    def arrow(name: str) -> str:
        return "↓" if direction(name) == "min" else "↑"

    first = primaries[runs[0].id] if runs else DEFAULT_MONITOR
    cols = {"time": _Column("time"), "id": _Column("id", "right"), "run": _Column("run"),
            "status": _Column("status"), "took": _Column("took", "right"),
            "primary": _Column(f"{first} {arrow(first)}" if one_primary else "primary (train.monitor)", "right")}
    cols["best"] = _Column("best", "right")  # the primary metric's best value (what the best checkpoint holds)
    for name in ALWAYS + tuple(n for n in OPTIONAL if n != "best"):
        shown_name = name if "loss" in name else short_metric(name)  # train/loss and val/loss stay apart
        cols[name] = _Column(f"{shown_name} {arrow(name)}", "right")
    lines: dict[int, dict[str, Text]] = {}
    for run in runs:
        primary = primaries[run.id]
        name = lit(run.name, "bold", newlines=False)
        suffix, parts = shown[run.id]
        name.append_text(lit(suffix, "bold", newlines=False))
        if parts:
            name.append(" ")
            name.append_text(lit(parts, "dim", newlines=False))
        if run.parent_id:
            name.append(f" ↻#{run.parent_id}", style="dim")
        cells = {
            "time": Text(f"{local(run.started_at):%H:%M}"),
            "id": Text(f"#{run.id}", style="dim"),
            "run": name,
            "status": lit(run.status, STATUS_STYLE.get(run.status, "")),
            "took": Text(fmt_duration(run.duration_s)),
            "primary": lit(value(run, primary) if one_primary else f"{primary} {value(run, primary)}", "bold"),
            "best": Text(value(run, primary, "best")),
        }
        for metric in ALWAYS + OPTIONAL:
            if metric != "best":
                cells[metric] = Text(value(run, metric))
        for key, cell in cells.items():
            if key != "run":
                cols[key].add(cell)
        lines[run.id] = cells
    longest = max([len("run")] + [c["run"].cell_len for c in lines.values()])

    def fixed(keys: list[str]) -> int:
        return sum(cols[k].width for k in keys if k != "run") + gap * (len(keys) - 1)

    keys = [k for k in cols if k not in OPTIONAL]
    run_min = max(RUN_FLOOR, min(longest, RUN_MIN))  # the run column is never narrower than RUN_FLOOR
    for optional in OPTIONAL:  # in priority order, as many as leave the run column its width (up to RUN_MIN)
        if width - fixed(keys + [optional]) >= run_min:
            keys.append(optional)
    cols = {k: cols[k] for k in cols if k in keys}  # in display order
    run_w = max(RUN_FLOOR, min(width - fixed(list(cols)), longest))
    indent = cols["time"].width + cols["id"].width + 2 * gap

    def line(cells: dict[str, Text]) -> list[Text]:
        """One run's row; the run column continues on the rows below when it is longer than its width, broken
        after a space, ``-`` or ``/`` (``break_lines``), never inside a NAME or a word that fits."""
        pieces = break_lines(cells["run"], run_w)
        rows = []
        for n, piece in enumerate(pieces):
            row = Text(no_wrap=True, overflow="ignore")
            for i, (key, col) in enumerate(cols.items()):
                cell = piece if key == "run" else (cells[key] if n == 0 else None)
                w = run_w if key == "run" else col.width
                pad = " " * (w - (0 if cell is None else cell.cell_len))
                if i:
                    row.append(" " * gap)
                if col.justify == "right":
                    row.append(pad)
                if cell is not None:
                    row.append_text(cell)
                if col.justify != "right":
                    row.append(pad)
            row.rstrip()
            rows.append(row)
        return rows

    def under(text: str, style: str, left: int = indent) -> None:
        """A note or crash line under its run, wrapped to the terminal, indented to the run column."""
        for piece in lit(text, style).wrap(console, max(20, width - left), overflow="fold"):
            piece.rstrip()
            console.print(Text(" " * left) + piece, soft_wrap=True)

    with console:  # buffered: one write at the end, not one per line
        if runs:
            console.print(line({k: Text(c.header, style="dim") for k, c in cols.items()})[0], soft_wrap=True)
        _print_days(log, console, lambda run: line(lines[run.id]), under)


def _print_days(log: DailyLog, console: Console, rows: Any, under: Any) -> None:
    """Each day's heading, its runs (``rows(run)``: the run's lines), their crash lines and notes, then the
    day's notes."""
    from rich.text import Text

    for day in log.ordered_days():
        console.print(Text(f"{day:%Y-%m-%d %A}", style="bold underline"))
        for run in log.days.get(day, []):
            for row in rows(run):
                console.print(row, soft_wrap=True)
            last = last_traceback_line(run)
            if last:
                under(f"✗ {last}", "red")
            for note in log.notes[run.id]:
                under(f"✎ {note.text}", "italic")
        for note in log.day_notes.get(day, []):
            under(f"✎ {local(note.created_at):%H:%M} {note.text}", "italic", 2)
        console.print()
