"""``fastpose compare --sweep ID`` and ``compare RUN... --by KEY``: runs pooled into groups. Torch-free.

Each run contributes its *final* value of each metric (what ``compare`` ranks by). A sweep contributes one
run per cell: the cell's completed run (a resumed continuation carries the cell's last epochs; its history
is joined with its parents'); cells not completed are listed as left out, never silently averaged in.
For each metric, one row per group: n, mean ± sd (ddof 1) and min-max. For the primary metric
(``fastpose.metrics.primary_metric``), the best group by mean is tested against each other group
with Welch's t-test (``fastpose.studies.stats``), and each pair gets one sentence of verdict. A metric whose
values mean different things across the runs (a loss under different loss definitions,
``comparable_across``) gets no star and no test. When no group is best, ``no_verdict`` says why in words: not
comparable, fewer than two groups with values, or a tie (every group the same mean; "identical at every seed"
when every run of every group has the same value, no variance at all).

The screen lists the headline metrics (``HEADLINE``: the primary, the rotation, pose and 3D IoU APs, the
errors and rates); ``--per-class`` adds the rest (losses, per-class APs), ``--metric`` picks; ``--json`` and
``--csv`` have every metric.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fastpose.config import flatten
from fastpose.errors import FastposeError
from fastpose.metrics import DIRECTIONS
from fastpose.screens.runs import run_to_json
from fastpose.screens.format import comparable_across, direction, is_better, primary_metric
from fastpose.studies.stats import TEST_NAME, Summary, Welch, describe, welch

ALPHA = 0.05
HEADLINE = ("rotation AP", "pose AP", "3D IoU AP", "errors and rates")  # metric groups the screen shows by default


@dataclass
class Group:
    label: str
    key: dict[str, Any]  # the grouping values
    runs: list[Any] = field(default_factory=list)  # RunRecord


@dataclass
class Contrast:
    best: Group
    other: Group
    metric: str
    test: Welch | None
    verdict: str


@dataclass
class GroupComparison:
    title: str
    groups: list[Group]
    summaries: dict[int, dict[str, Any]]  # run id -> name -> MetricSummary
    histories: dict[int, dict[str, list[tuple[int, float]]]]  # run id -> name -> [(epoch, value)] (cell chain)
    left_out: list[str]  # why a cell or run is not in the statistics
    cells: dict[int, str] = field(default_factory=dict)  # run id -> cell (sweeps)
    sweep: str | None = None
    metrics: list[str] = field(default_factory=list)
    primary: str = ""
    chosen: list[str] = field(default_factory=list)  # --metric: the metrics asked for (select_metrics)

    def __post_init__(self) -> None:
        names = {n for s in self.summaries.values() for n in s}
        known = [n for n in DIRECTIONS if n in names]
        self.metrics = known + sorted(names - set(known))
        first = self.runs[0].config if self.runs else None
        self.primary = primary_metric(first)

    @property
    def runs(self) -> list[Any]:
        return [r for g in self.groups for r in g.runs]

    def shown_metrics(self, everything: bool = False) -> list[str]:
        """The metrics the screen lists, primary first, those some group has values of: the headline ones
        (``HEADLINE``), or all with ``everything`` (``--per-class``) or what ``--metric`` chose."""
        from fastpose.screens.format import metric_group

        names = [m for m in self.metrics if any(self.summary(g, m).n for g in self.groups)]
        if not (everything or self.chosen):
            names = [m for m in names if m == self.primary or metric_group(m) in HEADLINE]
        return sorted(names, key=lambda m: m != self.primary)  # stable: the usual order after the primary

    def no_verdict(self, name: str | None = None) -> str | None:
        """Why ``name`` (default: the primary metric) has no best group, in words; None when it has one."""
        name = name or self.primary
        if not self.comparable(name):
            return "not comparable across these runs"
        scored = [g for g in self.groups if self.summary(g, name).n]
        if len(scored) < 2:
            return "fewer than two groups have values"
        if self.best(name) is not None:
            return None
        values = {v for g in scored for v in self.values(g, name) if v is not None and math.isfinite(v)}
        mean = _fmt(self.summary(scored[0], name).mean)
        if len(values) == 1:
            return (f"all {len(scored)} groups are identical at every seed ({mean} in every run, no variance): "
                    "not distinguishable")
        return f"all {len(scored)} groups have the same mean ({mean}): not distinguishable"

    def values(self, group: Group, name: str) -> list[float | None]:
        out = []
        for run in group.runs:
            s = self.summaries[run.id].get(name)
            out.append(None if s is None else s.final)
        return out

    def summary(self, group: Group, name: str) -> Summary:
        return describe(self.values(group, name))

    def comparable(self, name: str) -> bool:
        return comparable_across(name, [flatten(r.config) for r in self.runs])

    def best(self, name: str) -> Group | None:
        """The group with the best mean (None if fewer than two groups have values, or not comparable)."""
        if not self.comparable(name):
            return None
        scored = [(g, self.summary(g, name).mean) for g in self.groups if self.summary(g, name).n]
        if len(scored) < 2 or len({mean for _, mean in scored}) == 1:
            return None  # nothing to rank, or every group ties
        best = None
        for group, mean in scored:
            if best is None or is_better(name, mean, best[1]):
                best = (group, mean)
        return best[0] if best is not None else None

    def contrasts(self, name: str | None = None) -> list[Contrast]:
        name = name or self.primary
        best = self.best(name)
        if best is None:
            return []
        out = []
        for other in self.groups:
            if other is best or not self.summary(other, name).n:
                continue
            test = welch(self.values(best, name), self.values(other, name))
            out.append(Contrast(best, other, name, test, verdict(best, other, name, test,
                                                                 self.summary(best, name), self.summary(other, name))))
        return out

    # -- exports
    def csv_text(self) -> str:
        """One row per run: run, group and cell, every config key (``config.*``), final and best of every metric."""
        from fastpose.screens.runs import runs_csv

        extra = {"sweep": {r.id: self.sweep or "" for r in self.runs},
                 "group": {r.id: g.label for g in self.groups for r in g.runs},
                 "cell": {r.id: self.cells.get(r.id, "") for r in self.runs}}
        return runs_csv(self.runs, self.summaries, self.metrics, extra)

    def to_json(self) -> dict[str, Any]:
        groups = []
        for g in self.groups:
            metrics = {}
            for name in self.metrics:
                s = self.summary(g, name)
                metrics[name] = {"n": s.n, "mean": _num(s.mean), "sd": _num(s.sd), "min": _num(s.min), "max": _num(s.max)}
            groups.append({"group": g.label, "key": g.key, "n": len(g.runs), "runs": [r.id for r in g.runs],
                           "metrics": metrics})
        contrasts = []
        for c in self.contrasts():
            t = c.test
            contrasts.append({
                "metric": c.metric, "best": c.best.label, "other": c.other.label, "verdict": c.verdict,
                "difference": None if t is None else _num(t.diff),
                "ci95": None if t is None else [_num(t.ci_low), _num(t.ci_high)],
                "p": None if t is None else _num(t.p), "t": None if t is None else _num(t.t),
                "df": None if t is None else _num(t.df),
                "n": [self.summary(c.best, c.metric).n, self.summary(c.other, c.metric).n],
            })
        runs = []
        for g in self.groups:
            for run in g.runs:
                item = run_to_json(run, summaries=self.summaries[run.id], notes=[])
                item["group"] = g.label
                item["cell"] = self.cells.get(run.id)
                item["history"] = {n: [[e, _num(v)] for e, v in h] for n, h in self.histories[run.id].items()}
                runs.append(item)
        return {
            "sweep": self.sweep, "test": TEST_NAME, "values": "final value of each run", "alpha": ALPHA,
            "primary_metric": self.primary, "groups": groups, "comparisons": contrasts,
            "no_verdict": self.no_verdict(), "runs": runs,
            "left_out": self.left_out,
            "directions": {m: direction(m) for m in self.metrics},
            "comparable": {m: self.comparable(m) for m in self.metrics},
        }


def verdict(best: Group, other: Group, name: str, test: Welch | None, sb: Summary, so: Summary) -> str:
    """One plain sentence on best vs other for metric ``name``."""
    values = f"{_fmt(sb.mean)} vs {_fmt(so.mean)}"
    if test is None:
        return (f"{best.label} vs {other.label} on {name}: {values}; too few runs for a test "
                f"(n = {sb.n} + {so.n}, needs 2 + 2).")
    detail = (f"difference {_fmt(test.diff, signed=True)} (95 % CI {_fmt(test.ci_low, signed=True)} to "
              f"{_fmt(test.ci_high, signed=True)}), p = {_p(test.p)}, n = {test.n_a} + {test.n_b}")
    if test.p < ALPHA and test.diff != 0:
        word = "lower" if direction(name) == "min" else "higher"
        return f"{best.label} beats {other.label} on {name} ({word} is better): {values}, {detail}."
    return f"{best.label} vs {other.label} on {name}: not distinguishable at this n ({values}, {detail})."


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "nan"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def _fmt(value: float, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "nan"
    text = f"{value:+.3g}" if signed else f"{value:.3g}"
    return text


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# ----------------------------------------------------------------------------- loading
def group_label(key: dict[str, Any]) -> str:
    if not key:
        return "all"
    if len(key) == 1:
        return str(next(iter(key.values())))
    return ", ".join(f"{k}={v}" for k, v in key.items())


def check_by(keys: list[str]) -> list[str]:
    """``--by`` keys (repeatable, or comma-separated): dotted config keys; unknown ones are an error."""
    from fastpose.journal.tags import parse_where

    out = [k.strip() for item in keys for k in item.split(",") if k.strip()]
    parse_where([f"{k}=x" for k in out])  # the same key check and message as journal --where
    return out


def check_request(*, sweep: str | None, refs: list[str], by: list[str]) -> list[str]:
    """The grouping asked for, checked before the journal is read; returns the ``--by`` keys."""
    by = check_by(by or [])
    if sweep is None and not by:
        raise FastposeError("grouping needs --sweep ID or --by KEY")
    if sweep is not None and refs:
        raise FastposeError("give either runs or --sweep, not both")
    if sweep is None and len(refs) < 2:
        raise FastposeError("compare --by needs at least two runs")
    return by


def load_groups(reader: Any, *, sweep: str | None = None, refs: list[str] | None = None, by: list[str] | None = None,
                tuning: bool = False) -> GroupComparison:
    """The groups of a sweep (its completed cells) or of the runs ``refs`` grouped by the config keys ``by``."""
    refs = list(refs or [])
    by = check_request(sweep=sweep, refs=refs, by=by or [])
    return _load(reader, sweep, refs, by, tuning)


def _load(reader: Any, sweep: str | None, refs: list[str], by: list[str], tuning: bool = False) -> GroupComparison:
    left_out: list[str] = []
    cells: dict[int, str] = {}
    chains: dict[int, list[int]] = {}
    if sweep is not None:
        from fastpose.journal.sweeps import SEED_KEYS, cell_runs, cell_states, describe, get_sweep, group_key
        from fastpose.studies.spec import SweepSpec

        record = get_sweep(reader, sweep)
        all_runs = cell_runs(reader, record.id)
        states = cell_states(all_runs)
        spec = SweepSpec.from_json(record.name, record.spec)
        if spec.tune_axes:  # a tuned sweep: its final cells, or (--tuning) its tuning stage
            from fastpose.studies.spec import STAGE_KEY

            stage = {c: json.loads(c).get(STAGE_KEY) == "tune" for c in states}
            groups_in_order = spec.group_order()

            def rank(c: str) -> tuple:  # the file's order, not the JSON's
                v = json.loads(c)
                g = group_key({k: x for k, x in v.items() if k not in spec.tune_axes})
                seeds = [v.get(k) for k in SEED_KEYS]
                return (groups_in_order.index(g) if g in groups_in_order else len(groups_in_order), str(seeds))

            order = [c.key for c in spec.tuning_cells()] if tuning else sorted(
                (c for c in states if not stage[c]), key=rank)
            states = {c: v for c, v in states.items() if stage[c] == tuning}
            if not tuning and any(stage.values()):
                left_out.append(f"{sum(stage.values())} tuning cells (compare them with --tuning)")
        else:
            if tuning:
                raise FastposeError(f"sweep {record.name} has no [tune] stage")
            order = [c.key for c in spec.cells()]
        ids, gkeys = [], {}
        for cell in order + sorted(set(states) - set(order)):
            if cell not in states:
                left_out.append(f"cell {describe(cell)}: not run yet")
                continue
            status, run = states[cell]
            if status != "completed":
                left_out.append(f"cell {describe(cell)}: {status} (run #{run.run_id})")
                continue
            ids.append(run.run_id)
            cells[run.run_id], gkeys[run.run_id] = describe(cell), run.group_key
        runs = [reader.get_run(i) for i in ids]
        for run in runs:
            chain, parent = [run.id], run.parent_id
            while parent is not None and any(c.run_id == parent for c in all_runs):
                chain.insert(0, parent)
                parent = reader.get_run(parent).parent_id
            chains[run.id] = chain
        title = f"sweep {record.name}"
    else:
        from fastpose.screens.runs import refuse_repeats

        runs, gkeys = [reader.resolve(ref) for ref in refs], {}
        refuse_repeats(refs, runs)
        chains = {r.id: [r.id] for r in runs}
        title = f"{len(runs)} runs"
    if not runs:
        raise FastposeError(f"{title}: no completed runs to compare" + (f" ({'; '.join(left_out[:3])})" if left_out else ""))

    groups: dict[str, Group] = {}
    for run in runs:
        flat = flatten(run.config)
        if by:
            key = {k: flat.get(k) for k in by}
        else:
            key = json.loads(gkeys[run.id])
        label = group_label(key)
        groups.setdefault(json.dumps(key, sort_keys=True, default=str), Group(label, key)).runs.append(run)

    every = sorted({i for chain in chains.values() for i in chain})
    summaries = reader.metric_summaries([r.id for r in runs])
    histories: dict[int, dict[str, list[tuple[int, float]]]] = {}
    per_run: dict[int, dict[str, dict[int, float]]] = {}
    for run_id in every:
        per: dict[str, dict[int, float]] = defaultdict(dict)
        for point in reader.metric_history(run_id):
            if point.epoch is not None:
                per[point.name][point.epoch] = point.value
        per_run[run_id] = per
    for run in runs:
        joined: dict[str, dict[int, float]] = defaultdict(dict)
        for run_id in chains[run.id]:  # oldest first: a continuation overwrites the epochs it re-trained
            for name, points in per_run[run_id].items():
                joined[name].update(points)
        histories[run.id] = {n: sorted(p.items()) for n, p in joined.items()}
    return GroupComparison(title, list(groups.values()), summaries, histories, left_out, cells, sweep)


# ----------------------------------------------------------------------------- rendering


