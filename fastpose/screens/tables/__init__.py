"""Tables for a paper: the evaluation, comparison and group screens as one neutral table (``PaperTable``),
which ``latex.py`` (booktabs) and ``markdown.py`` (GitHub pipe tables) write out.

The rules, the same in both faces:

| what              | how                                                                                   |
| ----------------- | ------------------------------------------------------------------------------------- |
| layout            | one row per run (``compare``), group (``--sweep``/``--by``) or class (``eval``); one column per metric |
| numbers           | APs and rates in percent with one decimal; any other column rounded so that its largest value shows three significant digits (at most four decimals); the caption says so |
| groups            | mean ± sd (sd with the mean's decimals; "–" for one run), n in a column of its own     |
| best value        | bold, per column, where the metric's direction is known (``metrics.direction_known``) and the values are comparable (not a loss defined differently across the runs); ties and single values are not bold; ``eval`` marks none (classes do not compete) |
| headings          | the NOCS names (IoU50, 5°2cm, ...) for the standard metrics, else the metric's name; ↑/↓ where the direction is known |
| user text         | run names, labels, group values, metric names and the caption are data: each face escapes every character its format would read as markup |
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from fastpose.metrics import direction, direction_known

SIGNIFICANT = 3
MAX_DECIMALS = 4
PERCENT_DECIMALS = 1


@dataclass
class Cell:
    """One cell: ``text`` (plain text, escaped by the face), bold or not, a ``± sd`` part (groups), and for
    headings the direction arrow (``up``/``down``)."""

    text: str
    bold: bool = False
    sd: str | None = None
    arrow: str | None = None


@dataclass
class PaperTable:
    caption: str
    header: list[Cell]
    rows: list[list[Cell]]
    align: str  # one letter per column: l | r
    rule_before: set[int] = field(default_factory=set)  # row indices preceded by a \midrule
    notes: list[str] = field(default_factory=list)  # sentences printed under the table
    label: str = ""  # \label{...} key (ASCII only)


# ----------------------------------------------------------------------------- numbers
_FRACTION = re.compile(r"(^|/)(iou_\d+|\d+deg(_\d+cm)?|degree_mAP_\d+|miss_rate|false_positive_rate)(/|$)")


def is_fraction(name: str) -> bool:
    """An AP or a rate: a fraction of 1, shown in percent."""
    return bool(_FRACTION.search(name))


def decimals(values: Sequence[float | None], percent: bool = False) -> int:
    """Decimals for a column: ``PERCENT_DECIMALS`` for percentages, else enough that the largest finite
    magnitude shows ``SIGNIFICANT`` digits (at most ``MAX_DECIMALS``)."""
    if percent:
        return PERCENT_DECIMALS
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    top = max(finite, default=0.0)
    if top == 0:
        return 2
    return max(0, min(MAX_DECIMALS, SIGNIFICANT - 1 - math.floor(math.log10(top))))


def fmt(value: float | None, places: int, percent: bool = False) -> str:
    """A number rounded to ``places`` decimals (``percent``: times 100 first); "–" for none or NaN."""
    if value is None or not math.isfinite(value):
        return "–"
    shown = round(100 * value if percent else value, places)
    return f"{shown + 0.0:.{places}f}"  # + 0.0: no "-0.0"


PRECISION_NOTE = (f"APs and rates in percent, {PERCENT_DECIMALS} decimal; other values rounded to "
                  f"{SIGNIFICANT} significant digits of each column's largest value")


# ----------------------------------------------------------------------------- headings
_NOCS = {"iou_25": "IoU25", "iou_50": "IoU50", "iou_75": "IoU75", "5deg_2cm": "5°2cm", "5deg_5cm": "5°5cm",
         "10deg_2cm": "10°2cm", "10deg_5cm": "10°5cm", "10deg_10cm": "10°10cm", "5deg": "5°", "10deg": "10°",
         "20deg": "20°", "rot_err_median": "rot. err. (°)", "trans_err_median_cm": "trans. err. (cm)",
         "miss_rate": "miss rate", "false_positive_rate": "FP rate", "loss": "val. loss"}


def heading(name: str, suffix: str = "") -> Cell:
    """The column heading of metric ``name``: its NOCS name for the standard validation metrics (per class:
    ``10°5cm mug``), else the name itself; an arrow where the direction is known."""
    parts = name.split("/")
    if len(parts) >= 2 and parts[0] == "val" and parts[1] in _NOCS:
        text = _NOCS[parts[1]] + ("" if len(parts) == 2 else " " + "/".join(parts[2:]))
    elif name == "train/loss":
        text = "train loss"
    else:
        text = name
    arrow = ("down" if direction(name) == "min" else "up") if direction_known(name) else None
    return Cell(text + suffix, arrow=arrow)


def _best_marks(values: list[float | None], name: str, comparable: bool) -> list[bool]:
    """Which values are the single best of the column (none when tied, alone, unknown or not comparable)."""
    if not comparable or not direction_known(name):
        return [False] * len(values)
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return [False] * len(values)
    best = min(finite) if direction(name) == "min" else max(finite)
    if finite.count(best) > 1:
        return [False] * len(values)
    return [v == best for v in values]


def _column(values: list[float | None], name: str, comparable: bool = True) -> list[Cell]:
    percent = is_fraction(name)
    places = decimals(values, percent)
    marks = _best_marks(values, name, comparable)
    return [Cell(fmt(v, places, percent), bold=b) for v, b in zip(values, marks)]


# ----------------------------------------------------------------------------- the screens as tables
def evaluation_table(table: Any) -> PaperTable:
    """``fastpose eval``'s NOCS table (``screens.evaluation.EvaluationTable``): classes, then the mean."""
    header = [Cell("class")] + [Cell(head, arrow="up") for _, head in table.columns]
    rows = [[Cell(name)] + [Cell(fmt(v, PERCENT_DECIMALS, percent=True)) for v in cells] for name, cells in table.rows]
    mean = [i for i, (name, _) in enumerate(table.rows) if name == "mean"]
    rot = " / ".join(fmt(v, PERCENT_DECIMALS, percent=True) for v in table.rotation_only)
    notes = [f"Rotation-only AP (5°, 10°, 20°): {rot}."]
    for label, value in table.lines:
        places = decimals([value])
        notes.append(f"{label[0].upper()}{label[1:]}: {fmt(value, places)}.")
    return PaperTable(caption=f"{table.title}. {PRECISION_NOTE}.", header=header, rows=rows,
                      align="l" + "r" * len(table.columns), rule_before=set(mean), notes=notes, label="tab:eval")


def comparison_table(cmp: Any, per_class: bool = False) -> PaperTable:
    """``fastpose compare``: one row per run, one column per metric (final values; the primary metric also
    at each run's best checkpoint), the best bold."""
    names = [n for n in cmp.shown_metrics(per_class) if any(v is not None for v in cmp.values(n, "final"))]
    columns: list[tuple[str, str]] = []
    for name in names:
        columns.append((name, "final"))
        if name == cmp.primary:
            columns.append((name, "best"))
    header = [Cell("run")]
    cells_by_column = []
    for name, kind in columns:
        header.append(heading(name, " (best ckpt)" if kind == "best" else ""))
        cells_by_column.append(_column(cmp.values(name, kind), name, cmp.comparable(name)))
    counts: dict[str, int] = {}
    for run in cmp.runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    rows = []
    for i, run in enumerate(cmp.runs):
        label = run.name if counts[run.name] == 1 else f"{run.name} (#{run.id})"
        rows.append([Cell(label)] + [column[i] for column in cells_by_column])
    caption = (f"{len(cmp.runs)} runs: final values of each metric; the primary metric {cmp.primary} also at each "
               f"run's best checkpoint; best in bold where the direction is known. {PRECISION_NOTE}.")
    notes = [f"#{run.id}: {run.label}" for run in cmp.runs]
    return PaperTable(caption=caption, header=header, rows=rows, align="l" + "r" * len(columns), notes=notes,
                      label="tab:compare")


def groups_table(cmp: Any) -> PaperTable:
    """``compare --sweep`` / ``--by``: one row per group, n, then mean ± sd of each metric's final values;
    the best mean bold; the primary metric's verdicts as notes."""
    shown = [m for m in cmp.metrics if any(cmp.summary(g, m).n for g in cmp.groups)]
    if cmp.primary in shown:
        shown.remove(cmp.primary)
        shown.insert(0, cmp.primary)
    header = [Cell("group"), Cell("n")] + [heading(m) for m in shown]
    columns = []
    for name in shown:
        summaries = [cmp.summary(g, name) for g in cmp.groups]
        percent = is_fraction(name)
        places = decimals([s.mean for s in summaries if s.n], percent)
        best = cmp.best(name) if direction_known(name) else None
        column = []
        for group, s in zip(cmp.groups, summaries):
            if not s.n:
                column.append(Cell("–"))
                continue
            sd = fmt(s.sd, places, percent) if s.n > 1 else "–"
            text = fmt(s.mean, places, percent) + (f" (n={s.n})" if s.n != len(group.runs) else "")
            column.append(Cell(text, bold=group is best, sd=sd))
        columns.append(column)
    rows = [[Cell(g.label), Cell(str(len(g.runs)))] + [c[i] for c in columns] for i, g in enumerate(cmp.groups)]
    caption = (f"{cmp.title}: final value of each run, mean ± sd (sample sd) per group; best mean in bold where "
               f"the direction is known and the values are comparable. {PRECISION_NOTE}.")
    notes = [c.verdict for c in cmp.contrasts()] + [f"Left out: {line}." for line in cmp.left_out]
    return PaperTable(caption=caption, header=header, rows=rows, align="lr" + "r" * len(shown), notes=notes,
                      label="tab:groups")
