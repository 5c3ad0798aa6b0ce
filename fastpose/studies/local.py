"""The local launcher: ``--jobs N`` cells side by side as ``fastpose`` subprocesses, with a live table.

- CPU threads are split between the cells: each gets ``OMP_NUM_THREADS = max(1, cpus // N)``.
- Each cell runs in its own session (so a terminal's Ctrl-C reaches the sweep only) with
  ``PR_SET_PDEATHSIG = SIGTERM``: if the sweep dies, even by SIGKILL, its cells stop as ``interrupted``
  with a checkpoint, and the next ``fastpose sweep`` continues them.
- Ctrl-C (or SIGTERM) on the sweep forwards the signal to every running cell, starts no new one, waits for
  them to journal themselves ``interrupted``, and exits 130 (143). A second Ctrl-C forwards again (the
  cells then stop at once).
- Each cell's output goes to ``<home>/sweeps/<id>/logs/<cell>.log``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

from fastpose.studies.spec import SweepSpec
from fastpose.studies.sweep import Task, cell_command, finish_sweep, sweep_dir

POLL_S = 0.2  # how often finished cells are noticed
JOURNAL_POLL_S = 2.0  # how often the table re-reads the journal


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: cells then outlive a killed sweep
        pass


def run_local(spec: SweepSpec, sweep_id: int, tasks: list[Task], *, jobs: int, url: str) -> int:
    threads = max(1, cpu_count() // jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), FASTPOSE_JOURNAL_URL=url)
    env.pop("FASTPOSE_DDP_SPEC", None)
    base = sweep_dir(spec)
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    todo = [t for t in tasks if t.action != "skip"]
    running: list[tuple[subprocess.Popen, Task]] = []
    stopping: dict[str, Any] = {"signal": None}

    def forward(signum: int, frame: Any) -> None:
        stopping["signal"] = signum
        for proc, _ in running:
            if proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def launch(task: Task) -> None:
        cmd = cell_command(spec, sweep_id, task, base / "cells")
        with open(logs / f"{task.cell.name}.log", "a", encoding="utf-8") as log:
            log.write(f"\n$ {' '.join(cmd[2:])}\n")
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        task.state, task.exit_code = "running", None
        running.append((proc, task))

    from fastpose.studies.table import LiveTable

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    table = LiveTable(spec, sweep_id, tasks, url, header=f"{jobs} at a time, {threads} thread(s) each")
    try:
        with table:
            last_read = 0.0
            while todo or running:
                while stopping["signal"] is None and todo and len(running) < jobs:
                    launch(todo.pop(0))
                for item in list(running):
                    proc, task = item
                    code = proc.poll()
                    if code is None:
                        continue
                    running.remove(item)
                    task.exit_code = code
                    if task.action == "resume" and code == 2 and stopping["signal"] is None:
                        # resume refused (e.g. the checkpoint already holds every epoch): train the cell again
                        task.action, task.reason = "train", f"resume of run #{task.parent_id} refused: start again"
                        todo.insert(0, task)
                if stopping["signal"] is not None and not running:
                    break
                now = time.monotonic()
                if table.live and now - last_read >= JOURNAL_POLL_S:  # nobody watches a log file: read at the end
                    table.refresh_from_journal()
                    last_read = now
                table.update()
                time.sleep(POLL_S)
            table.refresh_from_journal()
            table.update()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return finish_sweep(table, tasks, stopping)
