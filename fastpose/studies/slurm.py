"""The SLURM launcher: one submitit job per cell, resources from the sweep file's ``[slurm]`` table.

Why submitit: it is the cluster engine labs already run (sbatch files, job arrays, requeue on preemption,
logs and results per job), so fastpose writes none of that itself. Each job runs ``CellJob``:

1. at job start it claims its cell in the journal and plans it again (``SweepJournal.take``): a cell
   completed meanwhile is skipped, one whose earlier job was preempted or killed is resumed from last.ckpt,
   and one that another live process holds (a second sweep of the same file, a job submitted twice) is left
   to it: the job ends at once with ``"action": "held"``;
2. it runs the cell as ``fastpose train --config <cell>.toml`` (or ``fastpose resume RUN``) in a subprocess,
   inheriting the job's SLURM environment, so Lightning sees the allocation, and renews its claim meanwhile;
3. on preemption or timeout submitit calls ``checkpoint``, which requeues the same job: step 1 then resumes it
   (the claim names the job, so the requeued job takes its own claim back at once).

The submitter waits for the cells another process holds, as the local launcher does: when the holder gives
a cell back unfinished (or dies), it submits a job for it.

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
from fastpose.studies.plan import SweepJournal, Task, cell_command, finish_sweep, settle, sweep_dir, wait_for_other

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
        with SweepJournal(payload["url"], payload["sweep_id"], job=_job_id()) as link:
            task = Task(cell, "train")
            if link.take(task) != "launch":
                _write(plan_file, "[]")
                action = "held" if task.action == "wait" else "skip"
                return {"cell": cell.name, "action": action, "reason": task.reason, "state": task.state, "exit_code": 0}
            log = base / "logs" / f"{cell.name}.log"
            first = True
            while True:
                command = cell_command(spec, payload["sweep_id"], task, base / "cells")
                if first:  # the other ranks run rank zero's first command (see above)
                    _write(plan_file, json.dumps([command]))
                    first = False
                code = _run_holding(command, link, log)
                if settle(task, code, log, link, stopping=False) == "done":
                    break
                time.sleep(max(0.0, task.not_before - time.monotonic()))
        return {"cell": cell.name, "action": task.action, "reason": task.reason, "state": task.state,
                "exit_code": code}

    def checkpoint(self, payload: dict[str, Any]) -> Any:
        """Preempted or timed out: requeue the same job; it re-plans and resumes the cell from last.ckpt."""
        import submitit

        return submitit.helpers.DelayedSubmission(CellJob(), payload)


def _job_id() -> str | None:
    """The cluster's id of this job (array task included): a requeued job has the same one."""
    try:
        import submitit

        return str(submitit.JobEnvironment().job_id)
    except Exception:  # noqa: BLE001 - not inside a submitit job (a test calling CellJob directly)
        return None


def _run_holding(command: list[str], link: SweepJournal, log: Path) -> int:
    """Run the cell's command, its output appended to the cell's log, renewing our claim while it runs."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(command[2:])}\n")
        out.flush()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            link.renew()
            time.sleep(1.0)
    finally:
        if proc.poll() is None:  # the job itself is being stopped: the cell goes with it
            proc.terminate()
    return proc.wait()


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


def run_slurm(spec: SweepSpec, sweep_id: int, tasks: list[Task], *, url: str, link: SweepJournal,
              make_table: Any) -> int:
    try:
        import submitit
    except ImportError:  # pragma: no cover - a dependency of fastpose
        raise FastposeError("--launcher slurm needs submitit: pip install submitit") from None
    from fastpose.journal.db import journal_home
    cluster = os.environ.get(CLUSTER_ENV, "slurm")
    if cluster not in ("slurm", "local", "debug"):
        raise FastposeError(f"${CLUSTER_ENV} must be slurm, local or debug, got {cluster!r}")
    folder = sweep_dir(spec) / "submitit"
    executor = submitit.AutoExecutor(folder=str(folder) + "/%j", cluster=cluster)
    try:
        executor.update_parameters(**executor_parameters(spec, cluster))
    except (NameError, ValueError, AssertionError) as exc:
        raise FastposeError(f"[slurm] table: {str(exc).splitlines()[0]}") from None

    def payload(task: Task) -> dict[str, Any]:
        return {"url": url, "home": str(journal_home()), "sweep": spec.id, "sweep_id": sweep_id,
                "spec": spec.to_json(), "cell": task.cell.key, "values": task.cell.values,
                "threads": spec.slurm.get("cpus_per_task")}

    def submitted(task: Task, job: Any) -> None:
        task.state, task.extra["job"], task.exit_code = "running", job, None
        task.reason = f"job {job.job_id}"
        active.append(task)

    todo = [t for t in tasks if t.action in ("train", "resume")]
    waiting = [t for t in tasks if t.action == "wait"]  # held by another process: its result is ours too
    active: list[Task] = []
    if todo:
        with executor.batch():  # one job array for all cells
            jobs = [executor.submit(CellJob(), payload(t)) for t in todo]
        for task, job in zip(todo, jobs):
            submitted(task, job)
    submits = len(todo)
    stopping: dict[str, Any] = {"signal": None}

    def cancel(signum: int, frame: Any) -> None:
        stopping["signal"] = signum
        for task in active:
            try:
                task.extra["job"].cancel(check=False)
            except Exception:  # noqa: BLE001 - already finished
                pass

    previous = {sig: signal.signal(sig, cancel) for sig in (signal.SIGINT, signal.SIGTERM)}
    table = make_table(spec, sweep_id, tasks, url, header=f"submitit {cluster}: {submits} job(s)")
    try:
        with table:
            while active or (waiting and stopping["signal"] is None):
                for task in [t for t in active if t.extra["job"].done()]:
                    active.remove(task)
                    if _collect(task) == "held":
                        waiting.append(task)
                due = [t for t in waiting if t.not_before <= time.monotonic()]
                for task, outcome in zip(due, link.peek(due) if due else []):
                    if outcome == "wait":  # still held (or the journal is down): look again later
                        continue
                    waiting.remove(task)
                    if outcome == "launch" and stopping["signal"] is None:
                        submitted(task, executor.submit(CellJob(), payload(task)))
                        submits += 1
                        table.header = f"submitit {cluster}: {submits} job(s)"
                table.refresh_from_journal()
                table.update()
                if active or waiting:
                    time.sleep(POLL_S)
            table.refresh_from_journal()
            table.update()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return finish_sweep(table, tasks, stopping)


def _collect(task: Task) -> str:
    """A finished job's result into its task: ``"held"`` when another process held the cell, else ``"done"``."""
    job = task.extra["job"]
    try:
        result = job.result()
    except Exception as exc:  # noqa: BLE001 - the job failed outside the cell: say so in the table
        task.exit_code, task.state = 1, "crashed"
        text = str(exc).strip()
        task.reason = f"job {job.job_id} failed: {text.splitlines()[-1][:120] if text else type(exc).__name__}"
        return "done"
    task.exit_code = int(result.get("exit_code", 1))
    task.reason = result.get("reason") or task.reason
    if result.get("action") == "held":
        wait_for_other(task, task.reason)
        return "held"
    task.state = result.get("state") or task.state
    if result.get("action") == "skip":
        task.action = "skip"
    return "done"
