"""``fastpose journal tag`` and ``fastpose journal sweeps``, registered on the journal app (commands.py).

Torch-free; the listing reads through ``open_reader`` like ``fastpose journal``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fastpose.journal.commands import _console, journal_app, mark_lost, replay_spools


@journal_app.command("tag")
def tag(
    run: Annotated[str, typer.Argument(help="Run id, label, unique label prefix, or NAME (newest).")],
    tags: Annotated[list[str], typer.Argument(metavar="TAG...", help="One or more tags to add.")],
) -> None:
    """Tag a run (journal --tag T lists the runs with tag T)."""
    from fastpose.journal.store import JournalStore
    from fastpose.journal.tags import add_tags, run_tags, validate_tag

    wanted = [validate_tag(t) for t in tags]
    replay_spools()
    with JournalStore.open() as store:
        record = store.resolve(run)
        added = add_tags(store, record.id, wanted)
        now = run_tags(store, [record.id])[record.id]
    from rich.text import Text

    _console().print(Text(f"run #{record.id} {record.label}: tags {', '.join(now)}"
                          + ("" if added else " (unchanged)")))


@journal_app.command("sweeps")
def sweeps(
    as_json: Annotated[bool, typer.Option("--json", help="Print the sweeps as a JSON list instead.")] = False,
) -> None:
    """Each sweep with its cells: completed, running, failed (crashed, diverged, interrupted, lost), pending."""
    from fastpose.journal.reader import open_reader

    replay_spools()
    reader = open_reader()
    if reader is None:
        print("[]" if as_json else "No sweeps yet: fastpose sweep FILE.toml starts one.")
        return
    try:
        mark_lost(reader)
        rows = sweep_overview(reader)
    finally:
        reader.close()
    if as_json:
        from fastpose.text import strict_json

        print(strict_json(rows, indent=2))
        return
    if not rows:
        print("No sweeps yet: fastpose sweep FILE.toml starts one.")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title="sweeps", title_justify="left")
    for col in ("sweep", "created", "cells", "completed", "running", "failed", "pending", "axes"):
        table.add_column(col, justify="right" if col in ("cells", "completed", "running", "failed", "pending") else "left")
    for row in rows:
        table.add_row(
            Text(row["sweep"]), row["created"][:16].replace("T", " "), str(row["cells"]), str(row["completed"]),
            str(row["running"]), Text(str(row["failed"]), style="red" if row["failed"] else ""), str(row["pending"]),
            Text(", ".join(f"{k} × {len(v)}" for k, v in row["axes"].items())),
        )
    _console().print(table)


def sweep_overview(reader) -> list[dict]:  # noqa: ANN001 - JournalReader
    """One dict per sweep, newest first: cell counts by state (see ``fastpose.journal.sweeps``)."""
    from fastpose.journal.sweeps import cell_runs, cell_states, list_sweeps

    out = []
    for sweep in list_sweeps(reader):
        axes = sweep.spec.get("axes") or {}
        total = 1
        for values in axes.values():
            total *= len(values)
        states = [state for state, _ in cell_states(cell_runs(reader, sweep.id)).values()]
        done, running = states.count("completed"), states.count("running")
        failed = len(states) - done - running
        out.append({
            "sweep": sweep.name, "id": sweep.id, "created": sweep.created_at.astimezone().isoformat(),
            "source": sweep.source, "cells": total, "completed": done, "running": running, "failed": failed,
            "pending": max(0, total - len(states)), "axes": axes,
        })
    return out

