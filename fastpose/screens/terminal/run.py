"""One run on the terminal (``fastpose journal show``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from fastpose.journal.records import MetricSummary, RunRecord
from fastpose.screens.format import STATUS_STYLE, diff_stat, direction, fmt_bytes, fmt_duration, fmt_value, local, sparkline
from fastpose.screens.run import RunDetail
from fastpose.screens.terminal.evaluation import render_evaluations
from fastpose.screens.terminal.console import break_lines, lit, print_broken
from fastpose.text import visible

if TYPE_CHECKING:
    from rich.console import Console


def render_run(detail: RunDetail, console: Console) -> None:
    """Everything about a run, what a reader looks for first at the top: what and where, its notes (with
    ids), its metrics and evaluations, its checkpoints, its traceback; then the config values that differ from
    the defaults (then the whole config) and the code it ran."""
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    run = detail.run
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")  # a long path or command folds onto the next line; nothing is cut
    status = lit(run.status, STATUS_STYLE.get(run.status, ""))
    where = "-" if run.epoch is None and run.step is None else \
        f"epoch {'-' if run.epoch is None else run.epoch + 1}, step {run.step}"  # epochs counted from 1
    if run.status == "running":
        beat = local(run.heartbeat_at)
        position = ("running", f"{where}; last heartbeat {beat:%H:%M:%S}" if beat else where)
    else:
        position = ("ended at", where)
    rows: list[tuple[str, Any]] = [
        ("id", str(run.id)),
        ("name", run.name),
        ("status", status),
        ("started", f"{local(run.started_at):%Y-%m-%d %H:%M:%S}"),
        ("ended", f"{local(run.ended_at):%Y-%m-%d %H:%M:%S}" if run.ended_at else "-"),
        ("duration", fmt_duration(run.duration_s) + (" so far" if run.status == "running" else "")),
        position,
        ("host / pid", f"{run.host} / {run.pid}  (user {run.username})"),
        ("command", run.command or "-"),
        ("cwd", run.cwd or "-"),
        ("run dir", run.run_dir or "-"),
        ("resumed from", f"run #{run.parent_id}" if run.parent_id else "-"),
        ("checkpoint", run.checkpoint or "-"),
        ("versions", f"python {run.python_version}, torch {run.torch_version}, lightning {run.lightning_version}"),
    ]
    rows += _housekeeping_rows(detail)
    if run.error_message and run.status != "crashed":
        rows.append(("message", run.error_message))
    room = max(16, console.width - 4 - max(len(key) for key, _ in rows) - 2)  # the panel's edges, the key column
    for key, value in rows:  # a long path or command is broken after a / - or space, not inside a word
        head.add_row(key, Text("\n").join(break_lines(value if isinstance(value, Text) else lit(value), room)))
    console.print(Panel(head, title=lit(run.label, "bold"), expand=False))

    for note in detail.notes:
        console.print(lit(f"✎ #{note.id} {local(note.created_at):%Y-%m-%d %H:%M} {note.text}", "italic"))

    render_metrics(detail.summaries, detail.history, detail.primary, console)
    render_evaluations(detail.evaluations, console)
    if detail.checkpoints is None and any(r["kind"] == "run_dir" for r in detail.removed):
        console.print(Text("checkpoints", style="bold"))
        console.print(Text("  none: journal gc removed the run directory", style="dim"))
    else:
        render_checkpoints(run, detail.checkpoints, console)

    if run.traceback or run.status == "crashed":
        console.print(lit(f"traceback ({run.error_type}: {run.error_message})", "bold red"))
        console.print(Syntax(visible(run.traceback or ""), "pytb", word_wrap=True, background_color="default"))

    render_config(run.config, detail.config_changed, console)
    render_git(detail.git, console)
    render_source(detail.source, console)
    render_environment(run.environment, console)


def _housekeeping_rows(detail: RunDetail) -> list[tuple[str, Any]]:
    """Rows only some runs have: disk use, reproductions, deletion, what journal gc removed."""
    run, rows = detail.run, []
    if detail.disk is not None:
        use = detail.disk
        parts = ", ".join(f"{name} {fmt_bytes(use.parts[part])}" for part, name in (
            ("checkpoints", "checkpoints"), ("tensorboard", "TensorBoard"), ("logs", "logs"), ("other", "other"))
            if use.parts[part])
        rows.append(("disk", f"{fmt_bytes(use.total)}" + (f" ({parts})" if parts else "")))
    if run.reproduces_id is not None:
        rows.append(("reproduces", f"#{run.reproduces_id} (fastpose reproduce: its code, config and seeds)"))
    if detail.reproduced_by:
        rows.append(("reproduced by", ", ".join(f"#{i}" for i in detail.reproduced_by)))
    if run.deleted_at is not None:
        rows.append(("deleted", f"{local(run.deleted_at):%Y-%m-%d %H:%M} by journal rm "
                                f"(journal restore {run.id} brings it back)"))
    for kind, what in (("run_dir", "run directory"), ("checkpoint", "pruned checkpoints")):
        removed = [r for r in detail.removed if r["kind"] == kind]
        if not removed:
            continue
        names = "" if kind == "run_dir" else " " + ", ".join(r["path"].rsplit("/", 1)[-1] for r in removed)
        size = sum(int(r["bytes"] or 0) for r in removed)
        if any(r["done_at"] is None for r in removed):
            when = "being removed by journal gc (a gc was stopped; journal gc finishes it)"
        else:
            when = f"removed by journal gc {local(max(r['done_at'] for r in removed)):%Y-%m-%d %H:%M}"
        rows.append(("gc", f"{what}{names}: {when}" + (f", {fmt_bytes(size)}" if size else "")))
    return rows


def render_config(config: dict[str, Any], changed: list[tuple[str, Any, Any]], console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    from fastpose.config import toml_text

    title = f"config: {len(changed)} value{'s' if len(changed) != 1 else ''} not the default (*), then all of it"
    console.print(Text(title, style="bold"))
    if changed:
        table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1))
        for col in ("mark", "key", "value", "default"):
            table.add_column(col, overflow="fold")
        for key, value, default in changed:
            shown_default = "(not a config key today)" if default is KeyError else f"(default {_toml_or_none(default)})"
            table.add_row(Text("*", style="yellow"), lit(key, "bold"), lit(_toml_or_none(value), "yellow"),
                          lit(shown_default, "dim"))
        console.print(table)
    marked = {key for key, _, _ in changed}
    text = toml_text(config or {})
    section = ""
    for line in text.splitlines():  # the whole config as TOML (what --config reads), changed keys marked
        if line.startswith("["):
            section = line.strip("[]") + "."
        key = line.split(" = ", 1)[0].lstrip("# ")
        mark = "* " if section + key in marked or key in marked and not section else "  "
        console.print(Text("  ") + Text(mark, style="yellow") + lit(line, "dim" if mark == "  " else ""), soft_wrap=True)


def _toml_or_none(value: Any) -> str:
    from fastpose.config import _toml_value

    return "none" if value is None else _toml_value(value)


def render_git(git: Any, console: Console, title: str = "git (working directory)") -> None:
    from rich.text import Text

    console.print(Text(title, style="bold"))
    if git is None:
        console.print("  not recorded")
    elif not git.is_repo or git.commit is None:
        console.print(lit(f"  {git.error or 'not a git repository'}"))
    else:
        branch = git.branch or "(detached HEAD)"
        console.print(lit(f"  {git.commit}  {branch}  ")
                      + (Text("dirty", style="yellow") if git.dirty else Text("clean", style="green")))
        _render_git_details(git, console)


def _render_git_details(git: Any, console: Console) -> None:
    """A recorded git state's commit message, diff stat and untracked files (working directory or source)."""
    from rich.text import Text

    if git.message:
        console.print(lit(f"  {git.message.splitlines()[0]}", "dim"))
    for path, added, removed in diff_stat(git.diff):
        console.print(lit(f"  {path} | ") + Text(f"+{added}", style="green") + Text(" ") + Text(f"-{removed}", style="red"))
    if git.untracked:
        console.print(lit(f"  untracked: {', '.join(git.untracked)}"))


def render_source(source: Any, console: Console) -> None:
    """The fastpose code the run ran: version, where it was imported from, its checkout's git state."""
    from rich.text import Text

    console.print(Text("fastpose (the code the run ran)", style="bold"))
    if source is None:
        console.print(Text("  not recorded (a run journaled before revision 0007)", style="dim"))
        return
    console.print(lit(f"  version {source.version or '?'}, imported from {source.location or '?'}"))
    if not source.is_repo or source.commit is None:
        console.print(lit(f"  {source.error or 'not a git checkout'}", "dim"))
        return
    head = lit(f"  {source.commit}  {source.branch or '(detached HEAD)'}  ")
    head.append("dirty" if source.dirty else "clean", style="yellow" if source.dirty else "green")
    if source.same_as_cwd:
        head.append("  (the working directory's repository, above)", style="dim")
    console.print(head)
    if not source.same_as_cwd:
        _render_git_details(source, console)


def render_environment(env: dict[str, Any] | None, console: Console) -> None:
    """What else changes the run's numbers: threads, device, precision, backend flags, versions."""
    from rich.table import Table
    from rich.text import Text

    from fastpose.screens.run import environment_rows

    console.print(Text("environment (what else changes the numbers)", style="bold"))
    rows = environment_rows(env)
    if rows is None:
        console.print(Text("  not recorded (a run journaled before runs recorded their threads, device and versions)",
                           style="dim"))
        return
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1))
    table.add_column("part", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(Text("  ") + lit(key), lit(value))
    console.print(table)


def render_checkpoints(run: RunRecord, files: list[tuple[str, str, int, str | None]] | None, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    if files is None:
        console.print(Text("checkpoints", style="bold"))
        print_broken(console, lit(f"  run directory not on this machine ({run.run_dir or 'none recorded'}; host "
                                  f"{run.host})", "dim"))
        return
    if not files:
        console.print(Text("checkpoints", style="bold"))
        console.print(Text("  none", style="dim"))
        return
    unique = {}
    for _, name, size, same in files:
        if same is None:
            unique[name] = size
    table = Table(title=f"checkpoints ({fmt_bytes(sum(unique.values()))} on disk)", title_justify="left",
                  title_style="bold", box=None, pad_edge=False)
    for col, justify in (("kind", "left"), ("file", "left"), ("size", "right"), ("", "left")):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for kind, name, size, same in files:
        table.add_row(kind, lit(name), fmt_bytes(size), lit(f"same file as {same}", "dim") if same else "")
    console.print(table)


SPARK_MAX, SPARK_MIN = 30, 8  # the history's width: as wide as the terminal leaves, within these


def render_metrics(summaries: dict[str, MetricSummary], history: dict[str, list[float]], primary: str,
                   console: Console) -> None:
    """One row per metric, primary first, then grouped (``metric_order``): count, final, best with its epoch
    (counted from 1), and the history as a sparkline between its min and max. Metric names and values are
    never cut: the sparkline takes the width that is left (``SPARK_MIN`` to ``SPARK_MAX``), and without room
    for it the history columns are left out. Per-class values in a table of their own."""
    from rich.table import Table
    from rich.text import Text

    from fastpose.screens.format import metric_group, metric_order

    names = metric_order(set(summaries) | set(history), primary)
    if not names:
        console.print(Text("no metrics logged", style="dim"))
        return
    per_class = [n for n in names if metric_group(n) == "per class"]
    rows = []
    for name in names:
        if name in per_class:
            continue
        s = summaries.get(name)
        values = history.get(name, [])
        finite = [v for v in values if math.isfinite(v)]
        rows.append((name, [
            "↓" if direction(name) == "min" else "↑", str(len(values)), fmt_value(s.final) if s else "-",
            fmt_value(s.best) if s else "-", "-" if s is None or s.best_epoch is None else str(s.best_epoch + 1),
        ], [fmt_value(min(finite)) if finite else "-", fmt_value(max(finite)) if finite else "-"], values))
    heads = ("metric", "", "n", "final", "best", "epoch")
    widths = [max([len(heads[0])] + [len(visible(name)) for name, *_ in rows])]
    widths += [max([len(heads[i + 1])] + [len(cells[i]) for _, cells, _, _ in rows]) for i in range(5)]
    range_w = [max([3] + [len(r[i]) for _, _, r, _ in rows]) for i in range(2)]
    gap = 2  # between columns (no box, no edge padding)
    left = console.width - sum(widths) - gap * len(widths) - sum(range_w) - gap * 2
    spark = min(SPARK_MAX, left)
    with_history = spark >= SPARK_MIN
    title = "metrics (final, best at epoch" + ("; history min ▁▂▃▄▅▆▇█ max, oldest left)" if with_history else ")")
    table = Table(title=title, title_justify="left", title_style="bold", box=None, pad_edge=False)
    columns = list(zip(heads, ("left", "left", "right", "right", "right", "right")))
    if with_history:
        columns += [("min", "right"), ("history", "left"), ("max", "left")]
    for col, justify in columns:
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    group = None
    for name, cells, span, values in rows:
        if metric_group(name) != group and name != primary:
            if group is not None:
                table.add_section()
            group = metric_group(name)
        extra = [span[0], Text(sparkline(values, width=spark), style="cyan"), span[1]] if with_history else []
        table.add_row(lit(name, "bold" if name == primary else ""), *cells, *extra)
    console.print(table)
    if per_class:
        render_per_class(per_class, summaries, console)


def render_per_class(names: list[str], summaries: dict[str, MetricSummary], console: Console) -> None:
    """Per-class final values: one row per metric, one column per class."""
    from rich.table import Table

    from fastpose.screens.format import metric_order

    bases = metric_order({n.rsplit("/", 1)[0] for n in names})
    classes = sorted({n.rsplit("/", 1)[1] for n in names})
    table = Table(title="per class (final)", title_justify="left", title_style="bold", box=None, pad_edge=False)
    table.add_column("metric")
    for cls in classes:
        table.add_column(lit(cls), justify="right")
    for base in bases:
        cells = []
        for cls in classes:
            s = summaries.get(f"{base}/{cls}")
            cells.append("-" if s is None else fmt_value(s.final))
        table.add_row(lit(base), *cells)
    console.print(table)
