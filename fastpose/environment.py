"""The ``FASTPOSE_*`` environment, checked once when a command starts: a bad value is one ``error:`` line.

| variable               | meaning                                                  | valid values              |
| ---------------------- | -------------------------------------------------------- | ------------------------- |
| `FASTPOSE_HOME`        | journal home (default `./journal`)                       | a directory, or a path that does not exist yet |
| `FASTPOSE_JOURNAL_URL` | journal database URL (default SQLite in the home)        | `sqlite:///PATH` or `postgresql+psycopg://...` |
| `FASTPOSE_LOST_AFTER`  | seconds without heartbeat before a run elsewhere is lost | a finite number > 0       |
| `FASTPOSE_HEARTBEAT_S` | seconds between a run's heartbeats                       | a finite number > 0       |
| `FASTPOSE_BUSY_TIMEOUT_S` | seconds a journal write waits for a lock held by another process (default 10) | a finite number > 0 |
| `FASTPOSE_FAULT`       | fault injection for tests (`fastpose/faults.py`) | its own syntax            |
| `FASTPOSE_DEBUG`       | show the traceback of an error                           | anything non-empty        |
| `FASTPOSE_SUBMITIT_CLUSTER` | submitit executor of `sweep --launcher slurm` (default slurm; tests: local) | `slurm`, `local`, `debug` |
| `FASTPOSE_DDP_SPEC_WAIT_S` | seconds a cluster-started rank waits for rank zero's spec (default 900) | a finite number > 0 |
| `FASTPOSE_UI_TOKEN`    | the token `fastpose ui` requires on every request (as `--token`) | 16-256 of `A-Z a-z 0-9 - . _ ~ + / =` |
| `FASTPOSE_UI_POLL_S`   | seconds between a running run's page refreshes (default 5) | a finite number > 0 |

Torch-free and cheap: called by ``fastpose.cli.run`` before any command.

CPU threads (``train.threads``, ``--threads``) are chosen here too, torch-free, so the runner and the local
sweep launcher share one rule (``choose_threads``): a number given is used as given; ``0`` (auto) takes
``$OMP_NUM_THREADS`` when it is set, else the CPUs this process may run on (``sched_getaffinity``) that the
last minute's load average leaves free, at most ``MAX_AUTO_THREADS``, at least 1. On a shared machine more
threads than free cores make every parallel pass wait at its barrier for a descheduled thread: a tiny run
took 2.3-4.5 times as long on 2 threads as on 1 at load 9-10 on 2 cores.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from fastpose.errors import FastposeError


def positive_seconds(name: str, default: float) -> float:
    """``$name`` as a finite number of seconds > 0 (``default`` when unset or empty)."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise FastposeError(f"${name} must be a number of seconds, got {raw!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise FastposeError(f"${name} must be a finite number of seconds > 0, got {raw!r}")
    return value


MAX_AUTO_THREADS = 4  # the demo's 64-px batches give each kernel little work to split; more threads only wait


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a cgroup's or ``taskset``'s limit included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def load_average() -> float | None:
    """The last minute's load average (runnable processes), None where the system has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def auto_threads(jobs: int = 1) -> tuple[int, str]:
    """``(threads, why)`` for one of ``jobs`` processes started side by side: the free CPUs split between
    them (see the module docstring), ``why`` in words for the run's first line and its journal record."""
    cpus, load = available_cpus(), load_average()
    busy = 0 if load is None else min(cpus, int(load + 0.5))
    free = max(1, cpus - busy)
    threads = max(1, min(MAX_AUTO_THREADS, free // max(1, jobs)))
    why = f"auto: {free} of {cpus} CPUs free" + ("" if load is None else f" at load {load:.1f}")
    if jobs > 1:
        why += f", split between {jobs} jobs"
    if threads == MAX_AUTO_THREADS and free // max(1, jobs) > MAX_AUTO_THREADS:
        why += f", at most {MAX_AUTO_THREADS}"
    return threads, why


def choose_threads(setting: int) -> tuple[int, str]:
    """``(threads, why)`` for ``train.threads = setting``: as given when > 0, else ``$OMP_NUM_THREADS`` when it
    holds a positive integer, else ``auto_threads()``."""
    if setting > 0:
        return setting, "--threads"
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw), "OMP_NUM_THREADS"
    return auto_threads()


def carried_threads(environment: dict | None, config: dict | None) -> int | None:
    """The thread count a run used (its journaled environment; else a count its config set), for ``train
    --from`` and ``resume`` to carry over; None when neither says."""
    threads = (environment or {}).get("threads") if isinstance(environment, dict) else None
    used = threads.get("torch_intra_op") if isinstance(threads, dict) else None
    if isinstance(used, int) and not isinstance(used, bool) and used > 0:
        return used
    setting = ((config or {}).get("train") or {}).get("threads") if isinstance(config, dict) else None
    if isinstance(setting, int) and not isinstance(setting, bool) and setting > 0:
        return setting
    return None


def carry_threads(environment: dict | None, config: dict | None, run: str) -> tuple[int, str | None]:
    """``(train.threads, note)`` for a run that continues or repeats ``run`` (its journaled environment and
    config): the count it used, or fewer when this process has fewer CPUs (``note`` says so, in one line),
    or 0 (auto) when it recorded none (``note`` says that)."""
    used = carried_threads(environment, config)
    if used is None:
        return 0, f"{run} recorded no thread count: threads chosen as for a new run"
    cpus = available_cpus()
    if used > cpus:
        return cpus, (f"{run} trained on {used} threads; this process may use {cpus} CPUs: training on {cpus} "
                      f"(numbers may differ from {run}'s; --threads {used} uses {used} anyway)")
    return used, None


def check_environment() -> None:
    """Refuse a bad ``FASTPOSE_*`` value (see the module table) before anything is read or written."""
    for key, value in os.environ.items():
        if key.startswith("FASTPOSE_"):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise FastposeError(f"${key} is not valid UTF-8") from None
            if "\x00" in value:
                raise FastposeError(f"${key} holds a NUL character")
    home = os.environ.get("FASTPOSE_HOME")
    if home:
        path = Path(home)
        try:
            if path.exists() and not path.is_dir():
                raise FastposeError(f"$FASTPOSE_HOME {home!r} is not a directory (the journal home must be one)")
        except OSError as exc:
            raise FastposeError(f"$FASTPOSE_HOME {home!r}: {exc.strerror or exc}") from None
    cluster = os.environ.get("FASTPOSE_SUBMITIT_CLUSTER")
    if cluster and cluster not in ("slurm", "local", "debug"):
        raise FastposeError(f"$FASTPOSE_SUBMITIT_CLUSTER must be slurm, local or debug, got {cluster!r}")
    positive_seconds("FASTPOSE_DDP_SPEC_WAIT_S", 900.0)
    positive_seconds("FASTPOSE_UI_POLL_S", 5.0)
    url = os.environ.get("FASTPOSE_JOURNAL_URL")
    if url is not None and not url.strip():
        raise FastposeError("$FASTPOSE_JOURNAL_URL is set but empty; unset it for the SQLite journal in the home")
    if url and not url.startswith(("sqlite", "postgresql")):
        raise FastposeError(
            f"$FASTPOSE_JOURNAL_URL must be sqlite:///PATH or postgresql+psycopg://..., got {url.split(':', 1)[0]!r}"
        )
    positive_seconds("FASTPOSE_LOST_AFTER", 120.0)
    positive_seconds("FASTPOSE_HEARTBEAT_S", 15.0)
    positive_seconds("FASTPOSE_BUSY_TIMEOUT_S", 10.0)
    if os.environ.get("FASTPOSE_FAULT"):
        from fastpose.faults import parse_faults

        parse_faults()
