"""``fastpose compare A B [C ...]``: which run is better, and what differs between them. Torch-free.

Reads the journal only. The winner of a metric is the run with the best *final* value in the metric's
direction (``fastpose.journal.metrics``); the best-so-far value is shown beside it (it is what the best
checkpoint holds). Deltas are final values minus the first run's. Config: only keys whose values differ.
Code: each run's commit and dirty flag, and whether its code differs from the first run's (another commit,
or the same commit with other uncommitted changes).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastpose.errors import FastposeError
from fastpose.journal.metrics import DIRECTIONS, direction, is_better

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

    def __post_init__(self) -> None:
        names = {n for s in self.summaries.values() for n in s} | {n for h in self.histories.values() for n in h}
        known = [n for n in DIRECTIONS if n in names]
        self.metrics = known + sorted(names - set(known))
        if self.primary in self.metrics:  # the primary metric (train.monitor) leads the table
            self.metrics.remove(self.primary)
            self.metrics.insert(0, self.primary)

    @property
    def primary(self) -> str:
        """The first run's ``train.monitor`` (the metric that picked its best checkpoint), else the default."""
        from fastpose.journal.metrics import DEFAULT_MONITOR

        config = (self.runs[0].config or {}) if self.runs else {}
        return (config.get("train") or {}).get("monitor") or DEFAULT_MONITOR

    # -- per metric
    def values(self, name: str, kind: str) -> list[float | None]:
        """``kind`` final|best for each run (None when the run never logged it)."""
        out = []
        for run in self.runs:
            s = self.summaries[run.id].get(name)
            out.append(None if s is None else getattr(s, kind))
        return out

    def winner(self, name: str, kind: str = "final") -> int | None:
        """Index of the run with the best ``kind`` value; None if no run has a real value or all are equal."""
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
        flat = [flatten(r.config) for r in self.runs]
        keys = sorted(set().union(*flat)) if flat else []
        return {k: [f.get(k) for f in flat] for k in keys if len({repr(f.get(k)) for f in flat}) > 1}

    def code(self) -> list[str]:
        first = self.git[self.runs[0].id]
        return ["-" if i == 0 else code_relation(first, self.git[r.id]) for i, r in enumerate(self.runs)]

    # -- JSON
    def to_json(self) -> dict[str, Any]:
        from fastpose.journal.views import run_to_json

        runs = []
        for run, code in zip(self.runs, self.code()):
            item = run_to_json(run, summaries=self.summaries[run.id], notes=self.notes[run.id])
            epochs = self.epochs(run)
            item["epochs"] = len(epochs)
            item["epoch_range"] = [epochs[0], epochs[-1]] if epochs else None
            item["code_vs_first"] = code
            runs.append(item)
        metrics = {}
        for name in self.metrics:
            finals, bests = self.values(name, "final"), self.values(name, "best")
            w = self.winner(name)
            first = finals[0]
            metrics[name] = {
                "direction": direction(name),
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
    histories: dict[int, dict[str, list]] = {}
    for run in runs:
        per: dict[str, list] = defaultdict(list)
        for point in reader.metric_history(run.id):
            per[point.name].append((point.epoch, point.value))
        histories[run.id] = dict(per)
    return Comparison(
        runs=runs,
        summaries=summaries,
        histories=histories,
        git={r.id: parent_git(reader, r) for r in runs},
        notes=reader.run_notes(ids),
    )


# ----------------------------------------------------------------------------- rendering
def render(cmp: Comparison, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    from fastpose.journal.views import STATUS_STYLE, fmt_duration, fmt_value, sparkline
    from fastpose.text import lit

    runs = Table(title="runs", title_justify="left")
    runs.add_column("")
    runs.add_column("id · label", overflow="fold", min_width=16)
    runs.add_column("status", no_wrap=True)
    runs.add_column("epochs", overflow="fold")
    runs.add_column("time", no_wrap=True)
    runs.add_column("git (code vs #1)", overflow="fold")
    for i, (run, code) in enumerate(zip(cmp.runs, cmp.code()), 1):
        git = cmp.git[run.id]
        commit = (run.git_commit or "")[:8] or ("no git" if git is None or not git.is_repo else "-")
        if run.git_dirty:
            commit += " dirty"
        if i > 1:
            commit += f" ({code})"
        epochs = cmp.epochs(run)
        span = f"{len(epochs)} ({epochs[0]}-{epochs[-1]})" if epochs else "0"
        runs.add_row(
            f"#{i}", lit(f"{run.id} · {run.label}"), lit(run.status, STATUS_STYLE.get(run.status, "")),
            span, fmt_duration(run.duration_s), lit(commit),
        )
    console.print(runs)

    table = Table(title="metrics (final, Δ vs #1, best; ★ = best in direction)", title_justify="left")
    table.add_column("metric")
    table.add_column("dir")
    for i, run in enumerate(cmp.runs, 1):
        table.add_column(lit(f"#{i} {run.name}"))
    for name in cmp.metrics:
        finals, bests = cmp.values(name, "final"), cmp.values(name, "best")
        wf, wb = cmp.winner(name, "final"), cmp.winner(name, "best")
        cells = []
        for i, run in enumerate(cmp.runs):
            if finals[i] is None:
                cells.append(Text("-", style="dim"))
                continue
            text = Text()
            text.append(fmt_value(finals[i]), style="bold green" if i == wf else "")
            if i == wf and len(cmp.runs) > 1:
                text.append(" ★", style="bold green")
            if i > 0 and finals[0] is not None:
                delta = finals[i] - finals[0]
                good = is_better(name, finals[i], finals[0])
                text.append(f" ({delta:+.3g})", style="green" if good else ("red" if delta else "dim"))
            text.append("\nbest ")
            text.append(fmt_value(bests[i]), style="green" if i == wb else "dim")
            values = [v for _, v in cmp.histories[run.id].get(name, [])]
            if len(values) > 1:
                text.append("\n" + sparkline(values, width=24), style="cyan")
            cells.append(text)
        arrow = "↓" if direction(name) == "min" else "↑"
        table.add_row(lit(name), arrow, *cells)
    console.print(table)

    diff = cmp.config_diff()
    if diff:
        cfg = Table(title="config keys that differ", title_justify="left")
        cfg.add_column("key")
        for i, run in enumerate(cmp.runs, 1):
            cfg.add_column(lit(f"#{i} {run.name}"))
        for key, values in diff.items():
            cfg.add_row(lit(key), *[lit(repr(v) if isinstance(v, str) or v is None else str(v)) for v in values])
        console.print(cfg)
    else:
        console.print("config: identical")


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


def metric_panels(cmp: Any) -> tuple[Any, Any, Any, list[str]]:
    """``(plt, fig, axes, names)``: a grid of panels, three wide, one per metric ``cmp`` has a history of
    (matplotlib, Agg: no display needed). ``cmp`` is a Comparison or a GroupComparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in cmp.metrics if any(cmp.histories[r.id].get(n) for r in cmp.runs)]
    if not names:
        raise FastposeError("these runs have no metric history to plot")
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    return plt, fig, axes, names


def plot(cmp: Comparison, path: str) -> None:
    """One panel per metric, one line per run, value over epochs."""
    plt, fig, axes, names = metric_panels(cmp)
    for ax, name in zip(axes.flat, names):
        for i, run in enumerate(cmp.runs, 1):
            points = [(e, v) for e, v in cmp.histories[run.id].get(name, []) if e is not None]
            if points:
                xs, ys = zip(*sorted(points))
                ax.plot(xs, ys, marker="o", markersize=3, label=f"#{i} {run.name} ({run.id})")
        ax.set_title(f"{name} ({'lower' if direction(name) == 'min' else 'higher'} is better)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise FastposeError(f"cannot write plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
