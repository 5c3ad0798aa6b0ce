"""Renderings of the journal: the daily log, a run in detail, the Markdown export, sparklines, JSON.

rich is imported inside the functions that draw, so importing this module costs nothing.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from fastpose.journal.metrics import DEFAULT_MONITOR, direction, natural_key, run_primary
from fastpose.journal.records import MetricSummary, NoteRecord, RunRecord
from fastpose.text import finite_json, lit, visible

if TYPE_CHECKING:
    from rich.console import Console

    from fastpose.journal.reader import JournalReader

SPARK_CHARS = "▁▂▃▄▅▆▇█"
STATUS_STYLE = {
    "running": "bold cyan",
    "completed": "green",
    "crashed": "bold red",
    "interrupted": "yellow",
    "diverged": "magenta",
    "lost": "dim red",
}


# ----------------------------------------------------------------------------- small pieces


def sparkline(values: Sequence[float], width: int | None = 40) -> str:
    """``▁▂▄█``-style line of ``values`` (NaN/inf as a space), resampled to at most ``width`` cells."""
    vals = [float(v) for v in values]
    if width and len(vals) > width:  # mean of equal-sized buckets keeps the shape
        buckets = [vals[i * len(vals) // width : (i + 1) * len(vals) // width] for i in range(width)]
        vals = [_mean(b) for b in buckets]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return " " * len(vals)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in vals:
        if not math.isfinite(v):
            out.append(" ")
        elif span == 0:
            out.append(SPARK_CHARS[len(SPARK_CHARS) // 2])
        else:
            out.append(SPARK_CHARS[min(len(SPARK_CHARS) - 1, int((v - lo) / span * len(SPARK_CHARS)))])
    return "".join(out)


def _mean(bucket: list[float]) -> float:
    finite = [v for v in bucket if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def fmt_value(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def local(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.astimezone()


def short_metric(name: str) -> str:
    return name.split("/", 1)[-1]


def headline(summaries: dict[str, MetricSummary], primary: str | None = None, n: int = 4) -> list[tuple[str, float]]:
    """The metrics a one-line summary of a run shows (final values): its primary metric (``train.monitor``),
    the miss rate, the median errors and both losses, those it logged; else its first few."""
    wanted = (primary or DEFAULT_MONITOR, *ALWAYS, *EXPORT_METRICS)
    names = [m for m in dict.fromkeys(wanted) if m in summaries] or sorted(summaries)
    return [(m, summaries[m].final) for m in names[:n]]


def last_traceback_line(run: RunRecord) -> str | None:
    """A crashed run's one line: the traceback's last line (the exception, module-qualified), or the journaled
    reason where that is not the exception raised last (a full disk found deeper in the chain of causes)."""
    if run.status != "crashed":
        return None
    lines = [ln for ln in (run.traceback or "").strip().splitlines() if ln.strip()]
    raised = lines[-1].strip() if lines else ""
    if raised and (not run.error_type or raised.split(":", 1)[0].endswith(run.error_type)):
        return raised
    message = (run.error_message or "").strip().splitlines()
    return f"{run.error_type or 'Error'}: {message[0] if message else ''}".strip()


def diff_stat(diff: str | None) -> list[tuple[str, int, int]]:
    """``[(path, added, removed)]`` from a unified diff."""
    stats: dict[str, list[int]] = {}
    current = None
    for line in (diff or "").splitlines():
        m = re.match(r"diff --git a/(.*?) b/(.*)$", line)
        if m:
            current = m.group(2)
            stats[current] = [0, 0]
        elif current is None or line.startswith(("+++", "---")):
            continue
        elif line.startswith("+"):
            stats[current][0] += 1
        elif line.startswith("-"):
            stats[current][1] += 1
    return [(path, a, r) for path, (a, r) in stats.items()]


def run_to_json(
    run: RunRecord,
    store: JournalReader | None = None,
    *,
    summaries: dict[str, MetricSummary] | None = None,
    notes: list[NoteRecord] | None = None,
) -> dict[str, Any]:
    """The ``--json`` run object (``journal --json``, ``compare --json``). Pass ``store`` or both extras."""
    if summaries is None:
        summaries = store.metric_summaries([run.id])[run.id] if store else {}
    if notes is None:
        notes = store.notes(run.id) if store else []
    iso = lambda d: None if d is None else d.isoformat()  # noqa: E731
    return {
        "id": run.id,
        "name": run.name,
        "label": run.label,
        "status": run.status,
        "started": iso(run.started_at),
        "ended": iso(run.ended_at),
        "duration_s": run.duration_s,
        "git_commit": run.git_commit,
        "git_dirty": run.git_dirty,
        "final_metrics": {n: _json_num(s.final) for n, s in summaries.items()},
        "best_metrics": {n: _json_num(s.best) for n, s in summaries.items()},
        "notes": [n.text for n in notes],
        "epoch": run.epoch,
        "step": run.step,
        "parent_id": run.parent_id,
        "host": run.host,
        "pid": run.pid,
        "run_dir": run.run_dir,
        "checkpoint": run.checkpoint,
        "error_type": run.error_type,
        "error_message": run.error_message,
        "config": finite_json(run.config),
    }


def _json_num(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN



# ----------------------------------------------------------------------------- the daily log


class DailyLog:
    """Runs grouped by local day, newest first, with their summaries and notes (and the day notes)."""

    def __init__(
        self, reader: JournalReader | None, runs: list[RunRecord], day_notes: Iterable[NoteRecord] = ()
    ) -> None:
        ids = [r.id for r in runs]
        self.runs = runs
        self.summaries = reader.metric_summaries(ids) if reader else {}
        self.notes = reader.run_notes(ids) if reader else {}
        self.days: dict[date, list[RunRecord]] = defaultdict(list)
        self.day_notes: dict[date, list[NoteRecord]] = defaultdict(list)
        for run in runs:
            self.days[local(run.started_at).date()].append(run)
        for note in day_notes:
            self.day_notes[local(note.created_at).date()].append(note)

    def ordered_days(self) -> list[date]:
        return sorted(set(self.days) | set(self.day_notes), reverse=True)

    def to_json(self) -> list[dict[str, Any]]:
        return [run_to_json(r, summaries=self.summaries[r.id], notes=self.notes[r.id]) for r in self.runs]


def load_daily_log(
    reader: JournalReader,
    since: datetime | None = None,
    status: str | None = None,
    name: str | None = None,
    limit: int | None = None,
) -> DailyLog:
    """The runs ``list_runs`` selects, plus the day notes of the days shown (none when filtering runs)."""
    from fastpose.journal.reader import parse_since

    runs = reader.list_runs(since=since, status=status, name=name, limit=limit)
    notes_from = since
    if limit and len(runs) == limit:  # truncated: day notes only from the oldest day shown
        notes_from = parse_since(f"{runs[-1].started_at.astimezone():%Y-%m-%d}")
    day_notes = [] if status or name else reader.day_notes(since=notes_from)
    return DailyLog(reader, runs, day_notes)


# What the daily log shows of each run beside its primary metric: the miss rate always (a rotation error
# or an AP means little without it); then, as far as the terminal is wide enough (the run column keeps at
# least RUN_MIN columns), in this order: both losses (named in full, so train/loss and val/loss are never
# confused), the best primary value, the median errors.
ALWAYS = ("val/miss_rate",)
OPTIONAL = ("val/loss", "train/loss", "best", "val/rot_err_median", "val/trans_err_median_cm")
EXPORT_METRICS = ("val/rot_err_median", "val/trans_err_median_cm", "val/loss", "train/loss")  # the export's order
WIDE = 120  # from here on, two spaces between columns
RUN_MIN = 20
_LABEL = re.compile(r"^\d\d-\d\d-\d\d/\d\d-\d\d-(?P<rest>.*)$")


def label_parts(run: RunRecord) -> list[str] | None:
    """``[DATASET, BACKBONE, WEIGHTS(, N)]`` of a label ``YY-MM-DD/HH-MM-NAME-DATASET-BACKBONE-WEIGHTS(-N)``;
    None for a label not in that form (the whole label is then shown)."""
    m = _LABEL.match(run.label)
    if not m or not m.group("rest").startswith(run.name + "-"):
        return None
    return m.group("rest")[len(run.name) + 1 :].split("-")


def differing_labels(runs: list[RunRecord]) -> dict[int, tuple[str, str]]:
    """What each run's label adds to its NAME, time and day, as ``(suffix, parts)``: a same-minute suffix
    (``-2``) always, and the label parts that are not the same for every run shown (dataset, backbone,
    weights). A label not in the lab's form is shown whole, as ``parts``."""
    labels = {r.id: label_parts(r) for r in runs}
    parsed = [p for p in labels.values() if p is not None]
    varying = [i for i in range(3) if len({tuple(p[i : i + 1]) for p in parsed}) > 1]
    out = {}
    for run in runs:
        p = labels[run.id]
        if p is None:
            out[run.id] = ("", run.label)
        else:
            suffix = "".join(f"-{v}" for v in p[3:])
            out[run.id] = (suffix, "-".join(p[i] for i in varying if i < len(p)))
    return out


class _Column:
    def __init__(self, header: str, justify: str = "left") -> None:
        self.header, self.justify, self.cells = header, justify, []

    @property
    def width(self) -> int:
        return max([len(self.header)] + [c.cell_len for c in self.cells])


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
                cols[key].cells.append(cell)
        lines[run.id] = cells
    longest = max([len("run")] + [c["run"].cell_len for c in lines.values()])

    def fixed(keys: list[str]) -> int:
        return sum(cols[k].width for k in keys if k != "run") + gap * (len(keys) - 1)

    keys = [k for k in cols if k not in OPTIONAL]
    for optional in OPTIONAL:  # in priority order, as many as leave the run column its width (up to RUN_MIN)
        if width - fixed(keys + [optional]) >= min(longest, RUN_MIN):
            keys.append(optional)
    cols = {k: cols[k] for k in cols if k in keys}  # in display order
    run_w = max(8, min(width - fixed(list(cols)), longest))
    indent = cols["time"].width + cols["id"].width + 2 * gap

    def line(cells: dict[str, Text]) -> list[Text]:
        """One run's row; the run column folds onto continuation rows when it is longer than its width."""
        pieces = cells["run"].divide(range(run_w, cells["run"].cell_len, run_w)) if cells["run"].cell_len > run_w \
            else [cells["run"]]
        rows = []
        for n, piece in enumerate(pieces):
            row = Text(no_wrap=True, overflow="ignore")
            for i, (key, col) in enumerate(cols.items()):
                cell = piece if key == "run" else (cells[key] if n == 0 else Text(""))
                w = run_w if key == "run" else col.width
                pad = " " * max(0, w - cell.cell_len)
                if i:
                    row.append(" " * gap)
                row.append_text(Text(pad) + cell if col.justify == "right" else cell + Text(pad))
            row.rstrip()
            rows.append(row)
        return rows

    def under(text: str, style: str, left: int = indent) -> None:
        """A note or crash line under its run, wrapped to the terminal, indented to the run column."""
        for piece in lit(text, style).wrap(console, max(20, width - left), overflow="fold"):
            piece.rstrip()
            console.print(Text(" " * left) + piece, soft_wrap=True)

    if runs:
        console.print(line({k: Text(c.header, style="dim") for k, c in cols.items()})[0], soft_wrap=True)
    for day in log.ordered_days():
        console.print(Text(f"{day:%Y-%m-%d %A}", style="bold underline"))
        for run in log.days.get(day, []):
            for row in line(lines[run.id]):
                console.print(row, soft_wrap=True)
            last = last_traceback_line(run)
            if last:
                under(f"✗ {last}", "red")
            for note in log.notes[run.id]:
                under(f"✎ {note.text}", "italic")
        for note in log.day_notes.get(day, []):
            under(f"✎ {local(note.created_at):%H:%M} {note.text}", "italic", 2)
        console.print()


def daily_log_markdown(log: DailyLog, title: str = "fastpose journal") -> str:
    """The whole log as Markdown, grouped by day, newest day first (like the hand-kept one)."""
    out = [f"# {title}", ""]
    for day in log.ordered_days():
        out += [f"## {day:%Y-%m-%d %A}", ""]
        for run in log.days.get(day, []):
            summaries = log.summaries[run.id]
            metrics = ", ".join(f"{n} {fmt_value(v)}" for n, v in headline(summaries, run_primary(run.config, summaries)))
            line = f"- **{local(run.started_at):%H:%M}** `{run.label}` (#{run.id}) — {run.status}, {fmt_duration(run.duration_s)}"
            if metrics:
                line += f" — {metrics}"
            out.append(line)
            if run.git_commit:
                out.append(f"  - git {run.git_commit[:10]}{' (dirty)' if run.git_dirty else ''}")
            last = last_traceback_line(run)
            if last:
                out.append(f"  - crashed: `{last}`")
            for note in log.notes[run.id]:
                out.append(f"  - {note.text}")
        for note in log.day_notes.get(day, []):
            out.append(f"- {local(note.created_at):%H:%M} note: {note.text}")
        out.append("")
    # User text (labels, notes, tracebacks, metric names) is data: control characters are made visible
    # once, over the whole document (the rest of it is ours and holds none but newlines).
    return visible("\n".join(out).rstrip() + "\n")


# ----------------------------------------------------------------------------- one run


def render_run(run: RunRecord, reader: JournalReader, console: Console) -> None:
    """Everything about a run: what and where, its notes (with ids), the config values that differ from the
    defaults (then the whole config), the code it ran, its traceback, its checkpoints and its metrics."""
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

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
    if run.error_message and run.status != "crashed":
        rows.append(("message", run.error_message))
    for key, value in rows:
        head.add_row(key, value if isinstance(value, Text) else lit(value))
    console.print(Panel(head, title=lit(run.label, "bold"), expand=False))

    for note in reader.notes(run.id):
        console.print(lit(f"✎ #{note.id} {local(note.created_at):%Y-%m-%d %H:%M} {note.text}", "italic"))

    render_config(run.config, console)
    git = reader.git_state(run.id)
    render_git(git, console)
    render_source(reader.source_state(run.id), console)

    if run.traceback or run.status == "crashed":
        console.print(lit(f"traceback ({run.error_type}: {run.error_message})", "bold red"))
        console.print(Syntax(visible(run.traceback or ""), "pytb", word_wrap=True, background_color="default"))

    render_checkpoints(run, console)
    summaries = reader.metric_summaries([run.id])[run.id]
    history: dict[str, list[float]] = defaultdict(list)
    for point in reader.metric_history(run.id):
        history[point.name].append(point.value)
    render_metrics(summaries, history, run_primary(run.config, summaries), console)


def config_against_defaults(config: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``[(key, value, default)]`` for the run's config values that differ from today's defaults (the run's
    name aside); ``default`` is ``KeyError`` for a key today's config no longer has."""
    from fastpose.compare import flatten
    from fastpose.config import RunConfig

    defaults = RunConfig().flat()
    out = []
    for key, value in flatten(config).items():
        if key == "name":
            continue
        default = defaults.get(key, KeyError)
        if default is KeyError or value != default:
            out.append((key, value, default))
    return out


def render_config(config: dict[str, Any], console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    from fastpose.config import toml_text

    changed = config_against_defaults(config)
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


def checkpoint_files(run_dir: str | None) -> list[tuple[str, str, int, str | None]] | None:
    """``[(kind, file name, bytes, same file as)]`` of a run's checkpoints: best, last, periodic, then others
    (an interrupted write's temporary file); None when the run directory is not on this machine. Names that
    are hard links to one file (one file per epoch end, linked under each name) say so."""
    import os
    from pathlib import Path

    if not run_dir:
        return None
    folder = Path(run_dir) / "checkpoints"
    if not Path(run_dir).is_dir():
        return None
    try:
        entries = sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
    except OSError:
        return []
    order = {"best": 0, "last": 1, "periodic": 2, "other": 3}
    out: list[tuple[str, str, int, str | None]] = []
    seen: dict[tuple[int, int], str] = {}
    rows = []
    for path in entries:
        name = path.name
        kind = ("best" if name.startswith("best") and name.endswith(".ckpt") else "last" if name == "last.ckpt"
                else "periodic" if re.fullmatch(r"epoch\d+\.ckpt", name) else "other")
        rows.append((order[kind], natural_key(name), kind, path))
    for _, _, kind, path in sorted(rows):
        st = os.stat(path)
        same = seen.get((st.st_dev, st.st_ino))
        seen.setdefault((st.st_dev, st.st_ino), path.name)
        out.append((kind, path.name, st.st_size, same))
    return out


def fmt_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def render_checkpoints(run: RunRecord, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    files = checkpoint_files(run.run_dir)
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

    from fastpose.journal.metrics import metric_group, metric_order

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

    from fastpose.journal.metrics import metric_order

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
