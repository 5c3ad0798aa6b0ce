"""One run in detail (``fastpose journal show``): what and where, notes, the config against today's defaults,
the code it ran, what else changes its numbers (``environment_rows``: threads, device, precision, backend
flags, versions), its checkpoints on disk, its metrics with their histories, and its evaluations."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastpose.journal.du import DiskUse, checkpoint_kind, directory_use
from fastpose.journal.evaluations import EvaluationRecord, list_evaluations
from fastpose.journal.removal import removed_files
from fastpose.journal.records import GitState, MetricSummary, NoteRecord, RunRecord, SourceState
from fastpose.screens.format import natural_key, run_primary

if TYPE_CHECKING:
    from fastpose.journal.reader import JournalReader


@dataclass
class RunDetail:
    run: RunRecord
    notes: list[NoteRecord]
    git: GitState | None  # the working directory's
    source: SourceState | None  # the fastpose code's (None: journaled before provenance was recorded)
    config_changed: list[tuple[str, Any, Any]]  # (key, value, default) that differ from today's defaults
    checkpoints: list[tuple[str, str, int, str | None]] | None  # checkpoint_files; None: not on this machine
    summaries: dict[str, MetricSummary]
    history: dict[str, list[float]]  # metric name -> values, oldest first
    primary: str
    evaluations: list[EvaluationRecord]
    disk: DiskUse | None = None  # the run directory's disk use (None: not on this machine)
    removed: list[dict[str, Any]] = field(default_factory=list)  # what journal gc removed (gc_removals rows)
    reproduced_by: list[int] = field(default_factory=list)  # runs made by `fastpose reproduce` of this one
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # name -> (epoch, value) points

    def to_json(self) -> dict[str, Any]:
        """``journal show --json``: the run object of ``journal --json`` plus, per metric (reading order,
        primary first), direction, final, best, the epoch of the best (Lightning's 0-based index, as the
        journal and the checkpoint names have it) and the history; the config values that differ from today's
        defaults; both git states (diffs included); checkpoint files; evaluations."""
        from dataclasses import asdict

        from fastpose.screens.format import direction, json_num, metric_order
        from fastpose.screens.runs import run_to_json

        metrics = {}
        for name in metric_order(set(self.summaries) | set(self.history), self.primary):
            s = self.summaries.get(name)
            metrics[name] = {"direction": direction(name), "final": json_num(s.final) if s else None,
                             "best": json_num(s.best) if s else None,
                             "best_epoch": s.best_epoch if s else None,
                             "history": [json_num(v) for v in self.history.get(name, [])]}
        return {
            "run": run_to_json(self.run, summaries=self.summaries, notes=self.notes),
            "primary": self.primary,
            "metrics": metrics,
            "notes": [{"id": n.id, "created": n.created_at.isoformat(), "text": n.text} for n in self.notes],
            "config_not_default": [{"key": k, "value": v, "default": None if d is KeyError else d,
                                    "known_today": d is not KeyError} for k, v, d in self.config_changed],
            "git": None if self.git is None else {**asdict(self.git), "untracked": list(self.git.untracked)},
            "fastpose": None if self.source is None else {**asdict(self.source),
                                                          "untracked": list(self.source.untracked)},
            "checkpoints": None if self.checkpoints is None else [
                {"kind": kind, "file": name, "bytes": size, "same_file_as": same}
                for kind, name, size, same in self.checkpoints],
            "evaluations": [e.to_json() for e in self.evaluations],
        }


def load_run_detail(reader: JournalReader, run: RunRecord) -> RunDetail:
    """Everything ``journal show`` shows of ``run``, read through ``reader``."""
    summaries = reader.metric_summaries([run.id])[run.id]
    history: dict[str, list[float]] = defaultdict(list)
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for point in reader.metric_history(run.id):
        history[point.name].append(point.value)
        if point.epoch is not None:
            curves[point.name].append((point.epoch, point.value))
    return RunDetail(
        run=run, notes=reader.notes(run.id), git=reader.git_state(run.id), source=reader.source_state(run.id),
        config_changed=config_against_defaults(run.config), checkpoints=checkpoint_files(run.run_dir),
        summaries=summaries, history=dict(history), primary=run_primary(run.config, summaries),
        evaluations=list_evaluations(reader, run.id),
        disk=_disk(run.run_dir), removed=removed_files(reader, [run.id])[run.id],
        reproduced_by=[r.id for r in reader.reproductions(run.id)], curves=dict(curves),
    )


def environment_rows(env: dict[str, Any] | None) -> list[tuple[str, str]] | None:
    """The run's recorded environment (``fastpose/training/machine.py``) as ``(part, text)`` rows for
    ``journal show``; None when the journal holds none (a run journaled before environments were recorded)."""
    if not env:
        return None

    def part(name: str) -> dict[str, Any]:
        value = env.get(name)
        return value if isinstance(value, dict) else {}

    def text(value: Any) -> str:
        return "-" if value is None else ("on" if value is True else "off" if value is False else str(value))

    threads, device, backends, versions = part("threads"), part("device"), part("backends"), part("versions")
    rows = []
    if threads:
        line = (f"torch {text(threads.get('torch_intra_op'))} intra-op, {text(threads.get('torch_inter_op'))} "
                f"inter-op; OMP_NUM_THREADS {text(threads.get('OMP_NUM_THREADS'))}, MKL_NUM_THREADS "
                f"{text(threads.get('MKL_NUM_THREADS'))}")
        chosen, cpus = threads.get("chosen"), threads.get("cpus")
        extra = [x for x in (chosen, None if cpus is None or "CPUs" in str(chosen) else f"{cpus} CPUs available") if x]
        rows.append(("threads", line + (f" ({'; '.join(map(str, extra))})" if extra else "")))
    if device:
        count = device.get("count")
        rows.append(("device", f"{text(device.get('accelerator'))}: {text(device.get('name'))}"
                                + (f" x {count}" if isinstance(count, int) and count > 1 else "")))
    if "precision" in env:
        rows.append(("precision", text(env.get("precision"))))
    if backends:
        rows.append(("backends", ", ".join(f"{k} {text(v)}" for k, v in backends.items())))
    if versions:
        rows.append(("versions", ", ".join(f"{k} {text(v)}" for k, v in versions.items())))
    known = {"threads", "device", "precision", "backends", "versions", "recorded"}
    rows.extend((k, text(v)) for k, v in env.items() if k not in known)
    if env.get("recorded"):
        rows.append(("recorded", text(env["recorded"])))
    return rows


def _disk(run_dir: str | None) -> DiskUse | None:
    use = directory_use(run_dir)
    return use if use.here else None


def config_against_defaults(config: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``[(key, value, default)]`` for the run's config values that differ from today's defaults (the run's
    name aside); ``default`` is ``KeyError`` for a key today's config no longer has."""
    from fastpose.config import flatten
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
        kind = checkpoint_kind(path.name)
        rows.append((order[kind], natural_key(path.name), kind, path))
    for _, _, kind, path in sorted(rows):
        st = os.stat(path)
        same = seen.get((st.st_dev, st.st_ino))
        seen.setdefault((st.st_dev, st.st_ino), path.name)
        out.append((kind, path.name, st.st_size, same))
    return out
