"""``fastpose compare A B [C ...]``: which run is better, and what differs between them. Torch-free.

Reads the journal only. The winner of a metric is the run with the best *final* value in the metric's
direction (``fastpose.journal.metrics``); for the primary metric (run #1's ``train.monitor``) the best-so-far
values get a row of their own (what each best checkpoint holds; the verdict line is on them). Deltas are
final values minus the first run's. Config: only keys whose values differ, the run's name and display
options aside. Code: each run's working-directory commit and dirty flag and its fastpose code (version,
checkout commit), and whether each differs from the first run's (another commit or version, or the same
commit with other uncommitted changes). A resumed run's curves continue its parent's history.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastpose.errors import FastposeError
from fastpose.journal.metrics import (
    STANDARD_VAL, comparable_across, direction, is_better, metric_group, metric_order, run_primary,
)

if TYPE_CHECKING:
    from rich.console import Console


# ----------------------------------------------------------------------------- helpers shared with resume
def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 8}}`` -> ``{"train.epochs": 8}`` (the keys ``RunConfig.flat`` uses)."""
    out: dict[str, Any] = {}
    for key, value in (config or {}).items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``[(key, before, after)]`` for every flattened key whose value differs (missing keys as None)."""
    a, b = flatten(before), flatten(after)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def parent_git(reader: Any, run: Any) -> Any:
    """The GitState a run started from, or None when the journal has none."""
    try:
        return reader.git_state(run.id)
    except Exception:  # noqa: BLE001 - a journal without git rows still compares
        return None


def code_relation(first: Any, other: Any) -> str:
    """How ``other``'s code relates to ``first``'s: same | other commit | other uncommitted changes | unknown."""
    if first is None or other is None or not first.is_repo or not other.is_repo:
        return "unknown"
    if first.commit != other.commit:
        return "other commit"
    if (first.diff or "") != (other.diff or ""):
        return "other uncommitted changes"
    return "same"


# ----------------------------------------------------------------------------- the comparison
@dataclass
class Comparison:
    runs: list[Any]  # RunRecord, in the order asked
    summaries: dict[int, dict[str, Any]]  # run id -> name -> MetricSummary
    histories: dict[int, dict[str, list[tuple[int | None, float]]]]  # run id -> name -> [(epoch, value)]
    git: dict[int, Any]  # run id -> GitState | None
    notes: dict[int, list[Any]]
    metrics: list[str] = field(default_factory=list)
    parents: dict[int, list[int]] = field(default_factory=dict)  # run id -> ids it was resumed from, parent first
    source: dict[int, Any] = field(default_factory=dict)  # run id -> SourceState | None (the fastpose code)

    chosen: list[str] = field(default_factory=list)  # --metric: the metrics asked for (select_metrics)
    ancestry: dict[int, dict[str, list[tuple[int | None, float]]]] = field(default_factory=dict)
    # run id -> name -> [(epoch, value)] of the runs it was resumed from (parent first), for epochs before its own

    def __post_init__(self) -> None:
        names = {n for s in self.summaries.values() for n in s} | {n for h in self.histories.values() for n in h}
        # A run of today's code: every validation metric it logs, defined or not (the journal keeps only
        # finite values, so one no run could compute, a median error without a found object, has no row).
        if any(n in STANDARD_VAL for n in names):
            names |= set(STANDARD_VAL)
        self.metrics = metric_order(names, self.primary)

    @property
    def primary(self) -> str:
        """The first run's ``train.monitor`` (the metric that picked its best checkpoint), else the default."""
        if not self.runs:
            from fastpose.journal.metrics import DEFAULT_MONITOR

            return DEFAULT_MONITOR
        first = self.runs[0]
        return run_primary(first.config, self.summaries.get(first.id, {}))

    def shown_metrics(self, per_class: bool = False) -> list[str]:
        """The metrics the screen lists: per-class ones only when asked (``--per-class``) or named
        (``--metric``, see ``select_metrics``); ``--json`` has all of ``metrics``."""
        return [n for n in self.metrics if per_class or self.chosen or metric_group(n) != "per class"]

    # -- per metric
    def values(self, name: str, kind: str) -> list[float | None]:
        """``kind`` final|best for each run (None when the run never logged it)."""
        out = []
        for run in self.runs:
            s = self.summaries[run.id].get(name)
            out.append(None if s is None else getattr(s, kind))
        return out

    def comparable(self, name: str) -> bool:
        """Can the runs' values of ``name`` be ranked? Not a loss defined differently between them
        (``comparable_across``: another rotation loss, eps or weights makes another quantity)."""
        return comparable_across(name, [flatten(r.config) for r in self.runs])

    def winner(self, name: str, kind: str = "final") -> int | None:
        """Index of the run with the best ``kind`` value; None if no run has a real value, all are equal, or
        the values are not comparable (``comparable``)."""
        if not self.comparable(name):
            return None
        values = self.values(name, kind)
        real = [v for v in values if v is not None and math.isfinite(v)]
        if not real or (len(self.runs) > 1 and len(real) == len(values) and len(set(real)) == 1):
            return None
        best = None
        for i, value in enumerate(values):
            if value is None or not math.isfinite(value):
                continue
            if best is None or is_better(name, value, values[best]):
                best = i
        return best

    def epochs(self, run: Any) -> list[int]:
        return sorted({e for h in self.histories[run.id].values() for e, _ in h if e is not None})

    def config_diff(self) -> dict[str, list[Any]]:
        """Config keys whose values differ, without the run's name and display options (``NOT_COMPARED``):
        they tell the runs apart but do not change what was trained."""
        flat = [flatten(r.config) for r in self.runs]
        keys = sorted(set().union(*flat) - set(NOT_COMPARED)) if flat else []
        return {k: [f.get(k) for f in flat] for k in keys if len({repr(f.get(k)) for f in flat}) > 1}

    def curve(self, run: Any, name: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """``(inherited, own)`` points (epoch, value) of ``name`` for a run: a resumed run's curve starts with
        the history of the runs it was resumed from (epochs before its own first epoch)."""
        own = sorted((e, v) for e, v in self.histories[run.id].get(name, []) if e is not None)
        inherited = sorted((e, v) for e, v in self.ancestry.get(run.id, {}).get(name, []) if e is not None)
        return inherited, own

    def code(self) -> list[str]:
        """Each run's working-directory code relative to run #1's (``code_relation``; "-" for run #1)."""
        first = self.git[self.runs[0].id]
        return ["-" if i == 0 else code_relation(first, self.git[r.id]) for i, r in enumerate(self.runs)]

    def source_git(self, run: Any) -> Any:
        """The git state of the fastpose checkout the run ran (with the diff, which is kept with the working
        directory's when the two are one repository); None when fastpose was no checkout or not recorded."""
        source = self.source.get(run.id)
        if source is None or not source.is_repo:
            return None
        if source.same_as_cwd and self.git.get(run.id) is not None:
            from dataclasses import replace

            return replace(source, diff=self.git[run.id].diff)
        return source

    def source_code(self) -> list[str]:
        """Each run's fastpose code relative to run #1's: version and checkout (``code_relation``)."""
        first = self.runs[0]
        out = []
        for i, run in enumerate(self.runs):
            if i == 0:
                out.append("-")
                continue
            a, b = self.source.get(first.id), self.source.get(run.id)
            if a is None or b is None:
                out.append("unknown")
                continue
            relation = code_relation(self.source_git(first), self.source_git(run))
            if relation == "unknown" and a.version and b.version:  # installed packages: compare versions
                relation = "same" if a.version == b.version else "other version"
            elif a.version != b.version and relation == "same":
                relation = "other version"
            out.append(relation)
        return out

    # -- JSON
    def to_json(self) -> dict[str, Any]:
        from fastpose.journal.views import run_to_json

        runs = []
        source_relations = self.source_code()
        for run, code in zip(self.runs, self.code()):
            item = run_to_json(run, summaries=self.summaries[run.id], notes=self.notes[run.id])
            for kind in ("final", "best"):  # every metric of the comparison, null where this run has no value
                item[f"{kind}_metrics"] = {n: _num(getattr(self.summaries[run.id].get(n), kind, None))
                                           for n in self.metrics}
            item["resumed_from"] = list(self.parents.get(run.id, []))
            epochs = self.epochs(run)
            item["epochs"] = len(epochs)
            item["epoch_range"] = [epochs[0], epochs[-1]] if epochs else None
            item["code_vs_first"] = code
            source = self.source.get(run.id)
            item["fastpose"] = None if source is None else {
                "version": source.version, "location": source.location, "git_checkout": source.is_repo,
                "commit": source.commit, "dirty": source.dirty if source.is_repo else None,
                "same_as_cwd": source.same_as_cwd, "error": source.error}
            item["fastpose_vs_first"] = source_relations[len(runs)]
            runs.append(item)
        metrics = {}
        for name in self.metrics:
            finals, bests = self.values(name, "final"), self.values(name, "best")
            w = self.winner(name)
            first = finals[0]
            metrics[name] = {
                "direction": direction(name),
                "comparable": self.comparable(name),
                "runs": {
                    str(run.id): {
                        "final": _num(f),
                        "best": _num(b),
                        "delta_vs_first": _num(None if f is None or first is None else f - first),
                    }
                    for run, f, b in zip(self.runs, finals, bests)
                },
                "winner": None if w is None else self.runs[w].id,
                "winner_label": None if w is None else self.runs[w].label,
            }
        w = self.winner(self.primary, "best")
        return {
            "runs": runs,
            "primary": {"metric": self.primary, "direction": direction(self.primary),
                        "winner": None if w is None else self.runs[w].id},  # on the best-so-far values
            "metrics": metrics,
            "config_diff": {k: v for k, v in self.config_diff().items()},
        }


# Config keys that never enter the config diff: they name the run or change only what is displayed.
NOT_COMPARED = ("name", "train.progress_bar", "train.log_images")


def select_metrics(cmp: Any, names: list[str]) -> None:
    """Keep only the metrics ``names`` (and the primary, which the verdict is about) in a run or group
    comparison (``--metric``, repeatable): its screen, plot and JSON. A name the runs do not have is an error
    that lists the ones they have."""
    from fastpose.errors import FastposeError
    from fastpose.text import visible

    unknown = [n for n in names if n not in cmp.metrics]
    if unknown:
        have = ", ".join(cmp.metrics[:12]) + (f" and {len(cmp.metrics) - 12} more" if len(cmp.metrics) > 12 else "")
        raise FastposeError(f"no metric {visible(unknown[0], newlines=False)} in these runs; they have: "
                            f"{have or 'none'}")
    cmp.metrics = [n for n in cmp.metrics if n in names or n == cmp.primary]
    if hasattr(cmp, "chosen"):
        cmp.chosen = list(cmp.metrics)


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def load_comparison(refs: list[str], reader: Any = None) -> Comparison:
    """Resolve ``refs`` (id, label, label prefix or NAME) and read what the comparison needs."""
    if len(refs) < 2:
        raise FastposeError("compare needs at least two runs")
    if reader is None:
        from fastpose.journal.db import journal_url
        from fastpose.journal.reader import open_reader

        reader = open_reader()
        if reader is None:
            raise FastposeError(f"no journal yet at {journal_url()}; nothing to compare")
    runs = [reader.resolve(ref) for ref in refs]
    ids = [r.id for r in runs]
    summaries = reader.metric_summaries(ids)
    histories = {run.id: _history(reader, run.id) for run in runs}
    parents: dict[int, list[int]] = {}
    ancestry: dict[int, dict[str, list]] = {}
    for run in runs:  # a resumed run's curve continues its parent's: read the chain (at most MAX_CHAIN runs)
        chain, inherited, parent_id = [], defaultdict(list), run.parent_id
        first = min((e for h in histories[run.id].values() for e, _ in h if e is not None), default=None)
        while parent_id is not None and parent_id not in chain and len(chain) < MAX_CHAIN:
            try:
                parent = reader.get_run(parent_id)
            except FastposeError:  # deleted parent: the chain ends here
                break
            chain.append(parent.id)
            history = histories.get(parent.id) or _history(reader, parent.id)
            for name, points in history.items():
                inherited[name].extend((e, v) for e, v in points if e is not None and (first is None or e < first))
            starts = [e for h in history.values() for e, _ in h if e is not None]
            first = min(starts + ([first] if first is not None else []), default=first)
            parent_id = parent.parent_id
        parents[run.id] = chain
        ancestry[run.id] = dict(inherited)
    return Comparison(
        runs=runs,
        summaries=summaries,
        histories=histories,
        git={r.id: parent_git(reader, r) for r in runs},
        notes=reader.run_notes(ids),
        parents=parents,
        source={r.id: _source_state(reader, r.id) for r in runs},
        ancestry=ancestry,
    )


MAX_CHAIN = 20


def _source_state(reader: Any, run_id: int) -> Any:
    getter = getattr(reader, "source_state", None)
    return getter(run_id) if getter is not None else None


def _history(reader: Any, run_id: int) -> dict[str, list[tuple[int | None, float]]]:
    per: dict[str, list] = defaultdict(list)
    for point in reader.metric_history(run_id):
        per[point.name].append((point.epoch, point.value))
    return dict(per)


# ----------------------------------------------------------------------------- rendering
def render(cmp: Comparison, console: Console, *, spark: bool = False, per_class: bool = False) -> None:
    """The comparison on the terminal: the runs, the primary metric's verdict, one row per metric (runs as
    columns: final value, ★ for the best, Δ to run #1; ``spark``: a sparkline of the history too), the
    config keys that differ and the code each run ran."""
    from rich.table import Table
    from rich.text import Text

    from fastpose.journal.views import STATUS_STYLE, fmt_duration, fmt_value, sparkline
    from fastpose.text import lit

    runs = Table(title="runs", title_justify="left", box=None, pad_edge=False)
    for col, kw in (("", {}), ("id", {"justify": "right"}), ("label", {"overflow": "fold", "min_width": 16}),
                    ("status", {"no_wrap": True}), ("epochs", {"no_wrap": True}), ("took", {"no_wrap": True})):
        runs.add_column(col, **kw)
    for i, run in enumerate(cmp.runs, 1):
        epochs = sorted({e for points in cmp.curve(run, cmp.primary) for e, _ in points}) or cmp.epochs(run)
        span = f"{epochs[0]}-{epochs[-1]}" if epochs else "-"
        label = lit(run.label)
        if cmp.parents.get(run.id):
            label.append(f" (resumed from #{cmp.parents[run.id][0]})", style="dim")
        runs.add_row(f"#{i}", str(run.id), label, lit(run.status, STATUS_STYLE.get(run.status, "")), span,
                     fmt_duration(run.duration_s))
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
        console.print("config: identical (name and display options aside)")
    render_code(cmp, console)


def render_code(cmp: Comparison, console: Console) -> None:
    """Which code each run ran: the git state of its working directory and the fastpose code (version,
    checkout), each relative to run #1's."""
    from rich.table import Table

    from fastpose.text import lit

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


PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")


def check_plot_path(path: Any) -> None:
    """Refuse a plot path matplotlib cannot or should not write, before anything is read."""
    from pathlib import Path

    from fastpose.text import visible

    path = Path(path)
    shown = visible(path, newlines=False)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        raise FastposeError(f"--plot {shown}: the file name must end in .{', .'.join(PLOT_FORMATS)}")
    try:
        if path.is_dir():
            raise FastposeError(f"--plot {shown} is a directory; give a file name like curves.png")
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise FastposeError(f"--plot {shown}: not a regular file")
        if not path.parent.is_dir():
            raise FastposeError(f"--plot {shown}: directory {visible(path.parent, newlines=False)} does not exist")
    except OSError as exc:
        raise FastposeError(f"--plot {shown}: {exc.strerror or exc}") from None


def metric_panels(cmp: Any, names: list[str] | None = None) -> tuple[Any, Any, list[str]]:
    """``(fig, axes, names)``: a grid of panels, three wide, one per metric ``cmp`` has a history of
    (``names``: of these only). A bare matplotlib ``Figure`` on the Agg canvas: no display, and no pyplot
    (whose import is most of a plot's start-up). ``cmp`` is a Comparison or a GroupComparison."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [n for n in (cmp.metrics if names is None else names) if any(cmp.histories[r.id].get(n) for r in cmp.runs)]
    if not names:
        raise FastposeError("these runs have no metric history to plot")
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(5 * cols, 3.2 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes, names


def save_figure(fig: Any, path: str) -> None:
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise FastposeError(f"cannot write plot {path}: {exc.strerror or exc}") from None


def plot(cmp: Comparison, path: str, *, per_class: bool = False) -> None:
    """Draw ``plot_figure`` into ``path`` (PNG, PDF, SVG or JPEG by its suffix)."""
    save_figure(plot_figure(cmp, per_class=per_class), path)


def plot_figure(cmp: Comparison, *, per_class: bool = False) -> Any:
    """One panel per metric (per-class ones only with ``per_class``), one colour per run in every panel and
    one legend; a resumed run's curve starts with its parent's history (dashed); epochs on integer ticks.
    Lines carry the ``gid`` ``run<i>`` (own history) or ``run<i>-inherited`` (the parents')."""
    from matplotlib import rcParams
    from matplotlib.ticker import MaxNLocator

    fig, axes, names = metric_panels(cmp, cmp.shown_metrics(per_class))
    colours = rcParams["axes.prop_cycle"].by_key()["color"]
    handles = {}
    for ax, name in zip(axes.flat, names):
        for i, run in enumerate(cmp.runs):
            colour = colours[i % len(colours)]
            inherited, own = cmp.curve(run, name)
            if inherited:
                joined = inherited + own[:1]  # the dashed part meets the run's own first point
                xs, ys = zip(*joined)
                ax.plot(xs, ys, linestyle="--", color=colour, alpha=0.6, linewidth=1.2, gid=f"run{i}-inherited")
            if own:
                xs, ys = zip(*own)
                handles[i] = ax.plot(xs, ys, marker="o", markersize=3, color=colour, linewidth=1.5, gid=f"run{i}")[0]
        ax.set_title(f"{name} ({'lower' if direction(name) == 'min' else 'higher'} is better)", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    labels = [f"#{i + 1} {cmp.runs[i].name} (run {cmp.runs[i].id})"
              + (f", resumed from #{cmp.parents[cmp.runs[i].id][0]} (dashed)" if cmp.parents.get(cmp.runs[i].id) else "")
              for i in sorted(handles)]
    fig.legend([handles[i] for i in sorted(handles)], labels, loc="upper center", ncol=min(3, len(labels)),
               fontsize=8, frameon=False)
    # Fixed margins in inches (tight_layout measured every tick label: most of the plot's time).
    h, w = fig.get_figheight(), fig.get_figwidth()
    legend_in = 0.3 * math.ceil(len(labels) / 3) + 0.1
    fig.subplots_adjust(left=0.6 / w, right=1 - 0.15 / w, bottom=0.45 / h, top=1 - (legend_in + 0.3) / h,
                        wspace=0.28, hspace=0.6)
    return fig
