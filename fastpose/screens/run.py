"""One run in detail (``fastpose journal show``): what and where, notes, the config against today's defaults,
the code it ran, its checkpoints on disk, its metrics with their histories, and its evaluations."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastpose.journal.evaluations import EvaluationRecord, list_evaluations
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
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # name -> (epoch, value), the epoch's


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
        evaluations=list_evaluations(reader, run.id), curves=dict(curves),
    )


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
