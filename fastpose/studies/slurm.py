"""The SLURM launcher: one submitit job per cell, resources from the sweep file's ``[slurm]`` table.

Why submitit: it is the cluster engine labs already run (sbatch files, job arrays, requeue on preemption,
logs and results per job), so fastpose writes none of that itself. Each job runs ``CellJob``:

1. at job start it plans its cell again against the journal (``fastpose.studies.sweep.plan``): a cell
   completed meanwhile is skipped, one whose earlier job was preempted or killed is resumed from last.ckpt;
2. it runs the cell as ``fastpose train --config <cell>.toml`` (or ``fastpose resume RUN``) in a subprocess,
   inheriting the job's SLURM environment, so Lightning sees the allocation;
3. on preemption or timeout submitit calls ``checkpoint``, which requeues the same job: step 1 then resumes it.

The journal must be a server (PostgreSQL): the sweep command refuses a SQLite URL before submitting.
``[slurm]`` keys (all optional): partition, nodes, gpus_per_node, tasks_per_node, cpus_per_task, mem_gb,
time (minutes), account, qos, constraint, array_parallelism, setup (shell lines run first in each job, e.g.
``["module load cuda", "source ~/venvs/fastpose/bin/activate"]``), additional (raw sbatch options).
``$FASTPOSE_SUBMITIT_CLUSTER=local`` runs the jobs with submitit's LocalExecutor on this machine (the tests).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from fastpose.errors import FastposeError
from fastpose.studies.spec import SweepSpec
from fastpose.studies.sweep import Task, cell_command, finish_sweep, plan, sweep_dir

CLUSTER_ENV = "FASTPOSE_SUBMITIT_CLUSTER"
POLL_S = 2.0


def executor_parameters(spec: SweepSpec, cluster: str) -> dict[str, Any]:
    """submitit ``update_parameters`` keywords for the ``[slurm]`` table (generic ones work on any cluster)."""
    s = spec.slurm
    params: dict[str, Any] = {
        "name": f"fastpose-{spec.id}",
        "timeout_min": int(s.get("time", 60)),
        "nodes": int(s.get("nodes", 1)),
        "tasks_per_node": int(s.get("tasks_per_node", 1)),
    }
    for key in ("gpus_per_node", "cpus_per_task", "mem_gb"):
        if key in s:
            params[key] = s[key]
    if cluster == "slurm":
        for key in ("partition", "account", "qos", "constraint", "array_parallelism", "setup"):
            if key in s:
                params[f"slurm_{key}"] = s[key]
        if "additional" in s:
            params["slurm_additional_parameters"] = dict(s["additional"])
    elif cluster == "local" and "setup" in s:
        params["local_setup"] = s["setup"]
    return params


class CellJob:
    """What each submitit job runs (picklable; a ``submitit.helpers.Checkpointable`` in spirit: see
    ``checkpoint``). Returns ``{"cell": name, "action": ..., "exit_code": ...}``."""

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        os.environ["FASTPOSE_JOURNAL_URL"] = payload["url"]
        os.environ["FASTPOSE_HOME"] = payload["home"]
        if payload.get("threads"):
            os.environ.setdefault("OMP_NUM_THREADS", str(payload["threads"]))
        spec = SweepSpec.from_json(payload["sweep"], payload["spec"])
        cell = spec.cell(payload["values"])  # a tuning or a final cell, its values in the sweep's order
        base = Path(payload["home"]) / "sweeps" / spec.id
        # One task per GPU (tasks_per_node = gpus_per_node): every task runs the cell's command; rank zero
        # plans it and journals, the other ranks take the command and the DDP spec from files (runner.py).
        rank = int(os.environ.get("SLURM_PROCID") or os.environ.get("RANK") or 0)
        attempt = f"{os.environ.get('SLURM_JOB_ID', os.getpid())}-{os.environ.get('SLURM_RESTART_COUNT', '0')}"
        os.environ["FASTPOSE_DDP_SPEC_FILE"] = str(base / "ddp" / f"{attempt}.spec.json")
        plan_file = base / "ddp" / f"{attempt}.plan.json"
        if rank != 0:
            commands = json.loads(_wait_for(plan_file))
            codes = [subprocess.call(cmd) for cmd in commands[:1]]  # rank zero's first command; see below
            return {"cell": cell.name, "action": "rank", "exit_code": codes[0] if codes else 0}
        from fastpose.journal.store import JournalStore

        with JournalStore.open(payload["url"]) as store:
            store.mark_lost()
            task = plan(store, payload["sweep_id"], [cell])[0]
        commands = [] if task.action == "skip" else [cell_command(spec, payload["sweep_id"], task, base / "cells")]
        _write(plan_file, json.dumps(commands))
        if task.action == "skip":
            return {"cell": cell.name, "action": "skip", "reason": task.reason, "exit_code": 0}
        code = subprocess.call(commands[0])
        if task.action == "resume" and code == 2:  # resume refused (checkpoint holds every epoch): train again;
            task.action = "train"  # the other ranks' `resume` waits for the spec, which this train writes
            code = subprocess.call(cell_command(spec, payload["sweep_id"], task, base / "cells"))
        return {"cell": cell.name, "action": task.action, "exit_code": code}

    def checkpoint(self, payload: dict[str, Any]) -> Any:
        """Preempted or timed out: requeue the same job; it re-plans and resumes the cell from last.ckpt."""
        import submitit

        return submitit.helpers.DelayedSubmission(CellJob(), payload)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _wait_for(path: Path, timeout_s: float = 900.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file():
            return path.read_text(encoding="utf-8")
        time.sleep(0.5)
    raise FastposeError(f"rank zero wrote no plan to {path} within {timeout_s:.0f} s")


def run_slurm(spec: SweepSpec, sweep_id: int, tasks: list[Task], *, url: str) -> int:
    try:
        import submitit
    except ImportError:  # pragma: no cover - a dependency of fastpose
        raise FastposeError("--launcher slurm needs submitit: pip install submitit") from None
    from fastpose.journal.db import journal_home
    from fastpose.studies.table import LiveTable

    cluster = os.environ.get(CLUSTER_ENV, "slurm")
    if cluster not in ("slurm", "local", "debug"):
        raise FastposeError(f"${CLUSTER_ENV} must be slurm, local or debug, got {cluster!r}")
    folder = sweep_dir(spec) / "submitit"
    executor = submitit.AutoExecutor(folder=str(folder) + "/%j", cluster=cluster)
    try:
        executor.update_parameters(**executor_parameters(spec, cluster))
    except (NameError, ValueError, AssertionError) as exc:
        raise FastposeError(f"[slurm] table: {str(exc).splitlines()[0]}") from None
    todo = [t for t in tasks if t.action != "skip"]
    payloads = [
        {"url": url, "home": str(journal_home()), "sweep": spec.id, "sweep_id": sweep_id, "spec": spec.to_json(),
         "cell": t.cell.key, "values": t.cell.values, "threads": spec.slurm.get("cpus_per_task")}
        for t in todo
    ]
    jobs = []
    if payloads:
        with executor.batch():  # one job array for all cells
            jobs = [executor.submit(CellJob(), p) for p in payloads]
    for task, job in zip(todo, jobs):
        task.state, task.extra["job"] = "running", job
        task.reason = f"job {job.job_id}"
    stopping: dict[str, Any] = {"signal": None}

    def cancel(signum: int, frame: Any) -> None:
        stopping["signal"] = signum
        for task in todo:
            try:
                task.extra["job"].cancel(check=False)
            except Exception:  # noqa: BLE001 - already finished
                pass

    previous = {sig: signal.signal(sig, cancel) for sig in (signal.SIGINT, signal.SIGTERM)}
    table = LiveTable(spec, sweep_id, tasks, url, header=f"submitit {cluster}: {len(jobs)} job(s)")
    try:
        with table:
            while any(not t.extra["job"].done() for t in todo):
                table.refresh_from_journal()
                table.update()
                time.sleep(POLL_S)
            for task in todo:
                job = task.extra["job"]
                try:
                    result = job.result()
                    task.exit_code = int(result.get("exit_code", 1))
                except Exception as exc:  # noqa: BLE001 - the job failed outside the cell: say so in the table
                    task.exit_code = 1
                    task.reason = f"job {job.job_id} failed: {str(exc).strip().splitlines()[-1][:120] if str(exc).strip() else type(exc).__name__}"
            table.refresh_from_journal()
            table.update()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return finish_sweep(table, tasks, stopping)
