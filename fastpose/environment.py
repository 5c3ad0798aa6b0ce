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
