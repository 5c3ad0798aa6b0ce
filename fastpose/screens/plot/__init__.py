"""The plot face: screens drawn as figures with matplotlib (``compare --plot``, ``compare --sweep --plot``), and
the check of the file they are saved to."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from fastpose.errors import FastposeError
from fastpose.screens.format import direction

if TYPE_CHECKING:
    from fastpose.screens.comparison import Comparison


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


def panel_title(cmp: Any, name: str) -> str:
    """A panel's title: the metric and which way it improves; a loss defined differently between the runs
    (``cmp.comparable``: the table marks it ≠, no winner) says so instead of ranking."""
    if not cmp.comparable(name):
        return f"{name} (not comparable between these runs)"
    return f"{name} ({'lower' if direction(name) == 'min' else 'higher'} is better)"


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
    one legend; a resumed run's curve starts with its parent's history (dashed); epochs on integer ticks,
    counted from 1.
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
                xs, ys = zip(*((e + 1, v) for e, v in joined))
                ax.plot(xs, ys, linestyle="--", color=colour, alpha=0.6, linewidth=1.2, gid=f"run{i}-inherited")
            if own:
                xs, ys = zip(*((e + 1, v) for e, v in own))
                handles[i] = ax.plot(xs, ys, marker="o", markersize=3, color=colour, linewidth=1.5, gid=f"run{i}")[0]
        ax.set_title(panel_title(cmp, name), fontsize=9)
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


def plot_groups(cmp: Any, path: str, names: list[str] | None = None) -> None:
    """One panel per metric (``names``: these only, else all): each group's mean curve over epochs, its
    spread (± sd) shaded."""
    from collections import defaultdict

    from fastpose.studies.stats import describe

    fig, axes, names = metric_panels(cmp, names)
    for ax, name in zip(axes.flat, names):
        for group in cmp.groups:
            by_epoch: dict[int, list[float]] = defaultdict(list)
            for run in group.runs:
                for epoch, value in cmp.histories[run.id].get(name, []):
                    if math.isfinite(value):
                        by_epoch[epoch].append(value)
            if not by_epoch:
                continue
            stats = [describe(by_epoch[e]) for e in sorted(by_epoch)]
            epochs = [e + 1 for e in sorted(by_epoch)]  # counted from 1
            means = [s.mean for s in stats]
            sds = [s.sd if s.n > 1 else 0.0 for s in stats]
            line = ax.plot(epochs, means, marker="o", markersize=3, label=f"{group.label} (n={len(group.runs)})")[0]
            ax.fill_between(epochs, [m - d for m, d in zip(means, sds)], [m + d for m, d in zip(means, sds)],
                            color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(panel_title(cmp, name), fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, title="group mean ± sd", title_fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
