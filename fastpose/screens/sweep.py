"""Sweeps as screens: the overview of every sweep and its cells' states (``fastpose journal sweeps``). A running
sweep's own table (each cell's state, run, epoch and primary metric) is drawn from the launchers' tasks:
``fastpose.screens.terminal.sweep.LiveTable``."""

from __future__ import annotations


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
