"""A comparison of runs (``fastpose compare A B [C ...]``): which run is better, and what differs between them.

Built from the journal only. The winner of a metric is the run with the best *final* value in the metric's
direction (``fastpose.metrics``); for the primary metric (run #1's ``train.monitor``) the best-so-far
values get a row of their own (what each best checkpoint holds; the verdict line is on them). Deltas are
final values minus the first run's. Config: only keys whose values differ, the run's name, display
options and thread setting aside. Environment (``environment_diff``): the recorded threads, device,
precision, backend flags and versions that differ, each with why it changes the numbers; a run that recorded
none makes the answer "not recorded", never "identical". Code: each run's working-directory commit and dirty flag and its fastpose code (version,
checkout commit), and whether each differs from the first run's (another commit or version, or the same
commit with other uncommitted changes). A resumed run's curves continue its parent's history.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fastpose.config import NOT_COMPARED, flatten  # noqa: F401 - NOT_COMPARED re-exported
from fastpose.errors import FastposeError
from fastpose.screens.runs import refuse_repeats, run_to_json
from fastpose.screens.format import (
    STANDARD_VAL, comparable_across, direction, is_better, metric_group, metric_order, run_primary,
)


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
            from fastpose.screens.format import DEFAULT_MONITOR

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

    def environment_diff(self) -> dict[str, EnvironmentDifference]:
        """What else changes the numbers (``runs.environment``: threads, device, precision, backend flags,
        library versions) and differs between the runs: ``{key: (values per run, why it matters)}``, keys
        flattened (``threads.torch_intra_op``). Runs that recorded none are ``environment_missing``: with
        them nothing can be said either way."""
        if self.environment_missing():
            return {}
        flat = [flatten(r.environment) for r in self.runs]
        keys = sorted(set().union(*flat) - set(ENV_NOT_COMPARED)) if flat else []
        return {k: EnvironmentDifference([f.get(k) for f in flat], ENV_WHY.get(k.split(".", 1)[0], ""))
                for k in keys if len({repr(f.get(k)) for f in flat}) > 1}

    def environment_missing(self) -> list[int]:
        """0-based indices of the runs whose environment the journal does not hold (runs journaled before it
        was recorded, or not through ``fastpose train``)."""
        return [i for i, r in enumerate(self.runs) if not r.environment]

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
            "environment_diff": {k: {"values": d.values, "why": d.why} for k, d in self.environment_diff().items()},
            "environment_not_recorded": [self.runs[i].id for i in self.environment_missing()],
        }


@dataclass(frozen=True)
class EnvironmentDifference:
    values: list[Any]  # per run, in the comparison's order
    why: str  # how this part of the environment changes a run's numbers


# Environment keys that say why or where, not what ran: never a difference.
ENV_NOT_COMPARED = ("threads.cpus", "threads.chosen", "recorded")
ENV_WHY = {
    "threads": "CPU kernels split their sums by thread count: results are not bit-identical across counts",
    "device": "another device runs other kernels",
    "precision": "another number format",
    "backends": "other kernel choices (cuDNN, TF32, deterministic algorithms)",
    "versions": "other library code",
}


def select_metrics(cmp: Any, names: list[str]) -> None:
    """Keep only the metrics ``names`` (and the primary, which the verdict is about) in a run or group
    comparison (``--metric``, repeatable): its screen, plot and JSON. A name the runs do not have is an error
    that lists the ones they have."""
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
        from fastpose.journal.db import missing_journal
        from fastpose.journal.access import open_reader

        reader = open_reader()
        if reader is None:
            raise FastposeError(f"{missing_journal()}; nothing to compare")
    runs = [reader.resolve(ref) for ref in refs]
    refuse_repeats(refs, runs)
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


