"""A comparison of runs on the terminal (``fastpose compare A B ...``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from fastpose.screens.comparison import Comparison
from fastpose.screens.format import STATUS_STYLE, direction, fmt_duration, fmt_value, is_better, sparkline
from fastpose.screens.terminal.console import break_lines, lit

if TYPE_CHECKING:
    from rich.console import Console


def render(cmp: Comparison, console: Console, *, spark: bool = False, per_class: bool = False) -> None:
    """The comparison on the terminal: the runs, the primary metric's verdict, one row per metric (runs as
    columns: final value, ★ for the best, Δ to run #1; ``spark``: a sparkline of the history too), the
    config keys that differ and the code each run ran."""
    from rich.table import Table
    from rich.text import Text


    runs = Table(title="runs", title_justify="left", box=None, pad_edge=False)
    for col, kw in (("", {}), ("id", {"justify": "right"}), ("label", {}), ("status", {}), ("epochs", {}),
                    ("took", {})):
        runs.add_column(col, no_wrap=True, **kw)
    rows = []
    for i, run in enumerate(cmp.runs, 1):
        epochs = sorted({e for points in cmp.curve(run, cmp.primary) for e, _ in points}) or cmp.epochs(run)
        span = f"{epochs[0] + 1}-{epochs[-1] + 1}" if epochs else "-"  # counted from 1
        label = lit(run.label)
        if cmp.parents.get(run.id):
            label.append(f" (resumed from #{cmp.parents[run.id][0]})", style="dim")
        rows.append([f"#{i}", str(run.id), label, lit(run.status, STATUS_STYLE.get(run.status, "")), span,
                     fmt_duration(run.duration_s)])
    others = [max([len(head)] + [Text(r[k]).cell_len if isinstance(r[k], str) else r[k].cell_len for r in rows])
              for k, head in ((0, ""), (1, "id"), (3, "status"), (4, "epochs"), (5, "took"))]
    room = max(16, console.width - sum(others) - 2 * 5)  # the label's columns: the rest of the width
    for row in rows:  # a long label is broken after a - or /, never inside a word
        row[2] = Text("\n").join(break_lines(row[2], room))
        runs.add_row(*row)
    console.print(runs)

    primary = cmp.primary
    w = cmp.winner(primary, "best")
    verdict = Text("primary ", style="bold")
    verdict.append_text(lit(f"{primary} ({'lower' if direction(primary) == 'min' else 'higher'} is better): "))
    if w is None:
        verdict.append("no single best run", style="dim")
    else:
        verdict.append_text(lit(f"#{w + 1} {cmp.runs[w].name}", "bold green"))
        verdict.append(f" with best {fmt_value(cmp.values(primary, 'best')[w])} (its best checkpoint)")
    console.print(verdict)

    shown = cmp.shown_metrics(per_class)
    table = Table(box=None, pad_edge=False, show_edge=False, title_justify="left",
                  title="metrics: final value, ★ best, (Δ vs #1)" + ("; history" if spark else ""))
    table.add_column("metric", overflow="fold")
    table.add_column("", no_wrap=True)
    for i, run in enumerate(cmp.runs, 1):
        table.add_column(lit(f"#{i} {run.name}"), no_wrap=True)
    incomparable = 0
    rows = [(name, "final") for name in shown]
    if primary in shown:  # the primary metric's best values too: what each run's best checkpoint holds
        rows.insert(1, (primary, "best"))
    for name, kind in rows:
        values = cmp.values(name, kind)
        win = cmp.winner(name, kind)
        comparable = cmp.comparable(name)
        cells = []
        for i, run in enumerate(cmp.runs):
            value = values[i]
            if value is None or not math.isfinite(value):
                cells.append(Text("-" if value is None else "nan", style="dim"))
                continue
            text = Text(fmt_value(value), style="bold green" if i == win else "")
            text.append(" ★" if i == win and len(cmp.runs) > 1 else "  ", style="bold green")
            first = values[0]
            if i > 0 and first is not None and math.isfinite(first):
                delta = value - first
                good = is_better(name, value, first)
                style = "dim" if not comparable or not delta else ("green" if good else "red")
                text.append(f" ({delta:+.3g})", style=style)
            if spark and kind == "final":
                inherited, own = cmp.curve(run, name)
                points = [v for _, v in inherited + own]
                if len(points) > 1:
                    text.append(" " + sparkline(points, width=16), style="cyan")
            cells.append(text)
        arrow = "↓" if direction(name) == "min" else "↑"
        label = lit(name, "bold" if name == primary else "")
        if kind == "best":
            label = lit(f"{name} (best)", "bold")
        if not comparable:
            label.append(" ≠", style="yellow")
            incomparable += 1
        table.add_row(label, arrow, *cells)
    console.print(table)
    if incomparable:
        console.print(Text("≠ a loss defined differently between these runs (rotation loss, eps or weights): "
                           "another quantity, no winner", style="yellow"))
    hidden = len(cmp.metrics) - len(shown)
    if hidden:
        console.print(Text(f"{hidden} per-class metrics not shown (--per-class; --json has every metric)", style="dim"))

    diff = cmp.config_diff()
    if diff:
        cfg = Table(title="config keys that differ", title_justify="left", box=None, pad_edge=False)
        cfg.add_column("key", overflow="fold")
        for i, run in enumerate(cmp.runs, 1):
            cfg.add_column(lit(f"#{i} {run.name}"), overflow="fold")
        for key, values in diff.items():
            cfg.add_row(lit(key), *[lit(repr(v) if isinstance(v, str) or v is None else str(v)) for v in values])
        console.print(cfg)
    else:
        same_env = not cmp.environment_missing() and not cmp.environment_diff()
        console.print("config: identical (name, display options and thread setting aside)"
                      + ("" if same_env else "; what else changes the numbers:"))
    render_environment(cmp, console)
    render_code(cmp, console)


def render_environment(cmp: Comparison, console: Console) -> None:
    """The recorded environment (threads, device, precision, backend flags, versions) that differs between
    the runs, each with why it changes the numbers; "not recorded" for runs that have none."""
    from rich.table import Table
    from rich.text import Text

    missing = cmp.environment_missing()
    if missing:
        which = ", ".join(f"#{i + 1}" for i in missing)
        console.print(Text(f"environment: not recorded for {which} (journaled before runs recorded their threads, "
                           "device and versions): whether they differ is unknown", style="yellow"))
        return
    diff = cmp.environment_diff()
    if not diff:
        console.print("environment: identical (threads, device, precision, backend flags, versions)")
        return
    table = Table(title="environment that differs (changes the numbers)", title_justify="left", box=None,
                  pad_edge=False)
    table.add_column("key", overflow="fold")
    for i, run in enumerate(cmp.runs, 1):
        table.add_column(lit(f"#{i} {run.name}"), overflow="fold")
    for key, d in diff.items():
        table.add_row(lit(key, "yellow"), *[lit("-" if v is None else str(v)) for v in d.values])
    console.print(table)
    for why in dict.fromkeys(d.why for d in diff.values() if d.why):
        groups = sorted({k.split(".", 1)[0] for k, d in diff.items() if d.why == why})
        console.print(lit(f"  {', '.join(groups)}: {why}", "dim"))


def render_code(cmp: Comparison, console: Console) -> None:
    """Which code each run ran: the git state of its working directory and the fastpose code (version,
    checkout), each relative to run #1's."""
    from rich.table import Table


    code = Table(title="code", title_justify="left", box=None, pad_edge=False)
    code.add_column("")
    code.add_column("working directory (git)", overflow="fold")
    code.add_column("fastpose", overflow="fold")
    for i, (run, relation, source_relation) in enumerate(zip(cmp.runs, cmp.code(), cmp.source_code()), 1):
        source = cmp.source.get(run.id)
        if source is None:
            fastpose = "not recorded"
        else:
            fastpose = source.version or "?"
            if source.is_repo and source.commit:
                fastpose += f" {source.commit[:10]}" + (" dirty" if source.dirty else "")
                if source.same_as_cwd:
                    fastpose += " (= working directory)"
            else:
                fastpose += " (installed, no checkout)"
        if i > 1:
            fastpose += f" ({source_relation} vs #1)"
        code.add_row(f"#{i}", lit(_git_cell(cmp.git[run.id], relation if i > 1 else None)), lit(fastpose))
    console.print(code)


def _git_cell(git: Any, relation: str | None) -> str:
    if git is None:
        text = "not recorded"
    elif not git.is_repo or git.commit is None:
        text = git.error or "not a git repository"
    else:
        text = git.commit[:10] + (" dirty" if git.dirty else "")
    return text + (f" ({relation} vs #1)" if relation else "")
