"""One run on the terminal (``fastpose journal show``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from fastpose.journal.records import MetricSummary, RunRecord
from fastpose.screens.format import STATUS_STYLE, diff_stat, direction, fmt_bytes, fmt_duration, fmt_value, local, sparkline
from fastpose.screens.run import RunDetail
from fastpose.screens.terminal.evaluation import render_evaluations
from fastpose.screens.terminal.console import lit
from fastpose.text import visible

if TYPE_CHECKING:
    from rich.console import Console


def render_run(detail: RunDetail, console: Console) -> None:
    """Everything about a run: what and where, its notes (with ids), the config values that differ from the
    defaults (then the whole config), the code it ran, its traceback, its checkpoints, its metrics and its
    evaluations."""
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    run = detail.run
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    status = lit(run.status, STATUS_STYLE.get(run.status, ""))
    where = f"epoch {run.epoch}, step {run.step}" if run.epoch is not None or run.step is not None else "-"
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
    for key, value in rows:
        head.add_row(key, value if isinstance(value, Text) else lit(value))
    console.print(Panel(head, title=lit(run.label, "bold"), expand=False))

    for note in detail.notes:
        console.print(lit(f"✎ #{note.id} {local(note.created_at):%Y-%m-%d %H:%M} {note.text}", "italic"))

    render_config(run.config, detail.config_changed, console)
    render_git(detail.git, console)
    render_source(detail.source, console)

    if run.traceback or run.status == "crashed":
        console.print(lit(f"traceback ({run.error_type}: {run.error_message})", "bold red"))
        console.print(Syntax(visible(run.traceback or ""), "pytb", word_wrap=True, background_color="default"))

    if detail.checkpoints is None and any(r["kind"] == "run_dir" for r in detail.removed):
        console.print(Text("checkpoints", style="bold"))
        console.print(Text("  none: journal gc removed the run directory", style="dim"))
    else:
        render_checkpoints(run, detail.checkpoints, console)
    render_metrics(detail.summaries, detail.history, detail.primary, console)
    render_evaluations(detail.evaluations, console)


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


def render_checkpoints(run: RunRecord, files: list[tuple[str, str, int, str | None]] | None, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    if files is None:
        console.print(Text("checkpoints", style="bold"))
        console.print(lit(f"  run directory not on this machine ({run.run_dir or 'none recorded'}; host {run.host})", "dim"))
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


def render_metrics(summaries: dict[str, MetricSummary], history: dict[str, list[float]], primary: str,
                   console: Console) -> None:
    """One row per metric, primary first, then grouped (``metric_order``): count, final, best with its epoch,
    and the history as a sparkline between its min and max. Per-class values in a table of their own."""
    from rich.table import Table
    from rich.text import Text

    from fastpose.screens.format import metric_group, metric_order

    names = metric_order(set(summaries) | set(history), primary)
    if not names:
        console.print(Text("no metrics logged", style="dim"))
        return
    per_class = [n for n in names if metric_group(n) == "per class"]
    table = Table(title="metrics (final, best; history min ▁▂▃▄▅▆▇█ max, oldest left)", title_justify="left",
                  title_style="bold", box=None, pad_edge=False)
    for col, justify in (("metric", "left"), ("", "left"), ("n", "right"), ("final", "right"), ("best", "right"),
                         ("at epoch", "right"), ("min", "right"), ("history", "left"), ("max", "left")):
        table.add_column(col, justify=justify, no_wrap=col != "metric")  # type: ignore[arg-type]
    group = None
    for name in names:
        if name in per_class:
            continue
        if metric_group(name) != group and name != primary:
            if group is not None:
                table.add_section()
            group = metric_group(name)
        s = summaries.get(name)
        values = history.get(name, [])
        finite = [v for v in values if math.isfinite(v)]
        table.add_row(
            lit(name, "bold" if name == primary else ""),
            "↓" if direction(name) == "min" else "↑",
            str(len(values)),
            fmt_value(s.final) if s else "-",
            fmt_value(s.best) if s else "-",
            "-" if s is None or s.best_epoch is None else str(s.best_epoch),
            fmt_value(min(finite)) if finite else "-",
            Text(sparkline(values, width=30), style="cyan"),
            fmt_value(max(finite)) if finite else "-",
        )
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
