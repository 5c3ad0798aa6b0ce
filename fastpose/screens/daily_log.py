"""The daily log (``fastpose journal``): runs grouped by local day, newest first, with their final and best
metrics, notes and the day notes."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Iterable

from fastpose.journal.records import MetricSummary, NoteRecord, RunRecord
from fastpose.screens.format import DEFAULT_MONITOR, local
from fastpose.screens.runs import run_to_json

if TYPE_CHECKING:
    from fastpose.journal.reader import JournalReader


def headline(summaries: dict[str, MetricSummary], primary: str | None = None, n: int = 4) -> list[tuple[str, float]]:
    """The metrics a one-line summary of a run shows (final values): its primary metric (``train.monitor``),
    the miss rate, the median errors and both losses, those it logged; else its first few."""
    wanted = (primary or DEFAULT_MONITOR, *ALWAYS, *EXPORT_METRICS)
    names = [m for m in dict.fromkeys(wanted) if m in summaries] or sorted(summaries)
    return [(m, summaries[m].final) for m in names[:n]]


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
    deleted: str = "hide",
) -> DailyLog:
    """The runs ``list_runs`` selects, plus the day notes of the days shown (none when filtering runs, or
    listing deleted runs: ``deleted="only"``)."""
    from fastpose.journal.reader import parse_since

    runs = reader.list_runs(since=since, status=status, name=name, limit=limit, deleted=deleted)
    notes_from = since
    if limit and len(runs) == limit:  # truncated: day notes only from the oldest day shown
        notes_from = parse_since(f"{runs[-1].started_at.astimezone():%Y-%m-%d}")
    day_notes = [] if status or name or deleted == "only" else reader.day_notes(since=notes_from)
    return DailyLog(reader, runs, day_notes)


# What the daily log shows of each run beside its primary metric: the miss rate always (a rotation error
# or an AP means little without it); then, as far as the terminal is wide enough (the run column keeps at
# least RUN_MIN columns), in this order: both losses (named in full, so train/loss and val/loss are never
# confused), the best primary value, the median errors.
ALWAYS = ("val/miss_rate",)


EXPORT_METRICS = ("val/rot_err_median", "val/trans_err_median_cm", "val/loss", "train/loss")  # the export's order
