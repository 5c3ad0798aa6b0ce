"""Where ``fastpose resume RUN`` continues from, found without torch: the run, its ``last.ckpt`` and the config
the new run trains with.

``locate`` reads the journal (the stdlib reader where it can; never creating a journal), resolves the reference,
checks that the checkpoint file is there and that the new config is valid. Every mistake a user makes with
``resume`` (a misspelled run, a run that never wrote a checkpoint, a bad ``--epochs`` or ``--name``) is
refused here in one line, before torch or Lightning are imported (seconds on a loaded machine). What needs the
file's contents (how many epochs it holds, whether its weights fit the network) is checked afterwards by
``fastpose.training.runner.resume``, through ``fastpose.pose.checkpoint.load_torch_file``.

``launch_rank`` lives here too: it decides, before Lightning exists, whether this process is a DDP rank
started by a launcher (which never resolves or journals anything itself).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastpose.config import RunConfig
from fastpose.errors import FastposeError


@dataclass(frozen=True)
class ResumePoint:
    parent: Any  # RunRecord of the run to continue
    checkpoint: Path  # its last.ckpt
    config: RunConfig  # the new run's config: the parent's, with the updates


def launch_rank() -> int:
    """This process's global rank as the launcher set it (before Lightning exists): 0 when run by hand."""
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    node = int(os.environ.get("NODE_RANK") or os.environ.get("GROUP_RANK") or 0)
    local = int(os.environ.get("LOCAL_RANK") or 0)
    return 0 if node == 0 and local == 0 else max(1, local)


def locate(ref: str, *, epochs: int | None = None, name: str | None = None,
           updates: dict[str, Any] | None = None) -> ResumePoint:
    """The run ``ref`` names, its checkpoint and the new run's config (see the module docstring); a
    ``FastposeError`` (``UnknownRunError`` for a reference nothing matches) otherwise. Reads only."""
    from fastpose.journal.access import read_run
    from fastpose.journal.db import missing_journal
    from fastpose.journal.reader import UnknownRunError

    parent = read_run(ref, UnknownRunError(f"no run matches {ref!r}: {missing_journal()}"))
    ckpt = Path(parent.run_dir) / "checkpoints" / "last.ckpt" if parent.run_dir else None
    if ckpt is None or not ckpt.is_file():
        raise FastposeError(
            f"run {parent.id} ({parent.label}, {parent.status}) has no checkpoint to resume from"
            + (f": {ckpt} does not exist" if ckpt else "")
        )
    updates = dict(updates or {})
    if epochs is not None:
        updates["train.epochs"] = epochs
    if name is not None:
        updates["name"] = name
    if "train.threads" not in updates:  # the parent's thread count, unless this machine has fewer CPUs
        from fastpose.environment import carry_threads

        updates["train.threads"], why = carry_threads(parent.environment, parent.config, f"run {parent.id}")
        if why:
            print(f"note: {why}", file=sys.stderr)
    config = RunConfig.from_saved(parent.config).override(updates).validate()
    return ResumePoint(parent, ckpt, config)
