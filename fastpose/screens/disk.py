"""Disk use (``fastpose journal du``): per run, per sweep, deleted runs and the total; hard links counted once.

Built from the journal (which runs, their directories, their sweeps) and the file system
(``fastpose.journal.du``). The runs are counted in id order with one set of files seen, so a file linked
into two runs counts for the first; the total counts every file once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastpose.journal.du import PARTS, DiskUse, directory_use, journal_files_use
from fastpose.journal.records import RunRecord


@dataclass
class RunDisk:
    run: RunRecord
    use: DiskUse
    sweep: str | None = None


@dataclass
class DiskReport:
    runs: list[RunDisk]  # the live runs asked for, largest first
    sweeps: list[tuple[str, int, DiskUse]] = field(default_factory=list)  # (sweep id, runs, runs + its folder)
    deleted: DiskUse = field(default_factory=DiskUse)  # runs deleted by journal rm, until journal gc
    deleted_runs: int = 0
    journal_bytes: int | None = None  # the SQLite journal's files (None: a database server)
    total: DiskUse = field(default_factory=DiskUse)
    not_here: int = 0  # runs whose directory is not on this machine

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": [{"id": r.run.id, "label": r.run.label, "status": r.run.status, "sweep": r.sweep,
                      "run_dir": r.run.run_dir, **r.use.to_json()} for r in self.runs],
            "sweeps": [{"sweep": name, "runs": n, **use.to_json()} for name, n, use in self.sweeps],
            "deleted": {"runs": self.deleted_runs, **self.deleted.to_json()},
            "journal_bytes": self.journal_bytes,
            "total": self.total.to_json(),
            "runs_not_here": self.not_here,
            "parts": list(PARTS),
        }


def load_disk_report(reader: Any, *, refs: list[str] | None = None, sweep: str | None = None,
                     home: Path | None = None) -> DiskReport:
    """The disk use of the runs ``refs`` (or of sweep ``sweep``, or of the whole journal, deleted runs
    included in the total)."""
    from fastpose.journal.db import journal_home
    from fastpose.journal.sweeps import get_sweep, run_sweeps

    home = home or journal_home()
    sweeps = run_sweeps(reader)
    everything = not refs and sweep is None
    if refs:
        chosen = {r.id: r for r in (reader.resolve(ref) for ref in refs)}
        live = sorted(chosen.values(), key=lambda r: r.id)
    elif sweep is not None:
        name = get_sweep(reader, sweep).name
        live = [r for r in reader.list_runs() if sweeps.get(r.id) == name][::-1]
    else:
        live = reader.list_runs()[::-1]
    seen: set[tuple[int, int]] = set()
    report = DiskReport(runs=[])
    for run in live:
        use = directory_use(run.run_dir, seen)
        report.runs.append(RunDisk(run, use, sweeps.get(run.id)))
        report.total.add(use)
        report.not_here += not use.here
    if everything:
        for run in reader.list_runs(deleted="only")[::-1]:
            use = directory_use(run.run_dir, seen)
            report.deleted.add(use)
            report.deleted_runs += 1
        report.total.add(report.deleted)
    names = sorted({r.sweep for r in report.runs if r.sweep})
    for name in names:
        use = DiskUse()
        members = [r for r in report.runs if r.sweep == name]
        for r in members:
            use.add(r.use)
        folder = directory_use(home / "sweeps" / name, seen)  # its cell configs and logs
        use.add(folder)
        report.total.add(folder)
        report.sweeps.append((name, len(members), use))
    report.runs.sort(key=lambda r: (-r.use.total, r.run.id))
    if everything:
        report.journal_bytes = journal_files_use(reader.url)
    return report
