"""The Markdown face: the daily log as the lab's hand-kept log looked (``fastpose journal export``)."""

from __future__ import annotations

from fastpose.screens.daily_log import DailyLog, headline
from fastpose.screens.format import fmt_duration, fmt_value, last_traceback_line, local, run_primary
from fastpose.text import visible


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
