"""The local launcher: ``--jobs N`` cells side by side as ``fastpose`` subprocesses, with a live table.

- Cells start in the file's order as slots free up. Each is claimed in the journal first, then planned
  again (``SweepJournal.take``); a cell another process holds is looked at again every ``WAIT_POLL_S``
  while the other cells go on, and the sweep ends when every cell has ended, whoever ran it.
- CPU threads are split between the cells, once, when the sweep starts: each ``train`` cell gets ``--threads T``
  (``fastpose.environment.auto_threads(N)``: the free CPUs divided by N, at most 4, at least 1; also its
  ``OMP/MKL_NUM_THREADS``), unless the sweep's config sets ``train.threads``; a resumed cell keeps its parent's
  count. The count is in the cell's command line and its journaled environment.
- Each cell runs in its own session (so a terminal's Ctrl-C reaches the sweep only) with
  ``PR_SET_PDEATHSIG = SIGTERM``: if the sweep dies, even by SIGKILL, its cells stop as ``interrupted``
  with a checkpoint, and the next ``fastpose sweep`` continues them (its claims die with it).
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
from datetime import datetime, timezone
from typing import Any

from fastpose.studies.spec import SweepSpec
from fastpose.studies.plan import WAIT_POLL_S, SweepJournal, Task, cell_command, finish_sweep, settle, sweep_dir, wait_for_other

POLL_S = 0.2  # how often finished cells are noticed
JOURNAL_POLL_S = 2.0  # how often the table re-reads the journal


def _libc() -> Any:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True)
    except Exception:  # noqa: BLE001 - not Linux: cells then outlive a killed sweep
        return None


_LIBC = _libc()  # loaded here, not between fork and exec (the sweep may hold other threads by then)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_local(spec: SweepSpec, sweep_id: int, tasks: list[Task], *, jobs: int, url: str, link: SweepJournal,
              make_table: Any) -> int:
    from fastpose.environment import auto_threads

    threads, _ = auto_threads(jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), FASTPOSE_JOURNAL_URL=url)
    env.pop("FASTPOSE_DDP_SPEC", None)
    base = sweep_dir(spec)
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    todo = [t for t in tasks if t.action != "skip"]
    running: list[tuple[subprocess.Popen, Task]] = []
    stopping: dict[str, Any] = {"signal": None}
    claims: dict[str, Any] | None = None  # one read of the sweep's claims per scheduling pass

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
        if task.action == "train" and not task.cell.config.train.threads:
            cmd += ["--threads", str(threads)]
        with open(logs / f"{task.cell.name}.log", "a", encoding="utf-8") as log:
            log.write(f"\n$ {' '.join(cmd[2:])}\n")
            log.flush()
            task.launched_at = datetime.now(timezone.utc)
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        task.state, task.exit_code = "running", None
        running.append((proc, task))

    def schedule() -> None:
        """Fill the free slots in the file's order: a cell we hold starts (again) when due; any other is
        claimed and planned again first, unless the last read showed a live holder."""
        from fastpose.journal.sweeps import holder_gone

        nonlocal claims
        for task in list(todo):
            if len(running) >= jobs or stopping["signal"] is not None:
                return
            if task.not_before > time.monotonic():
                continue
            if task.token is None:
                if claims is None:
                    claims = link.claims()
                held = claims.get(task.cell.key)
                if held is not None and held.token not in link.held.values() and holder_gone(held) is None:
                    wait_for_other(task, f"held by {held.holder}")
                    continue
                outcome = link.take(task)
                if outcome == "wait":
                    continue
                if outcome == "done":
                    todo.remove(task)
                    continue
            todo.remove(task)
            launch(task)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    table = make_table(spec, sweep_id, tasks, url, header=f"{jobs} at a time, {threads} thread(s) each")
    try:
        with table:
            last_read = last_pass = 0.0
            while todo or running:
                now = time.monotonic()
                if now - last_pass >= WAIT_POLL_S:
                    claims, last_pass = None, now  # read the claims again at this pass
                schedule()
                for item in list(running):
                    proc, task = item
                    code = proc.poll()
                    if code is None:
                        continue
                    running.remove(item)
                    log = logs / f"{task.cell.name}.log"
                    if settle(task, code, log, link, stopping["signal"] is not None) == "again":
                        todo.insert(0, task)
                if stopping["signal"] is not None and not running:
                    break
                link.renew()
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
