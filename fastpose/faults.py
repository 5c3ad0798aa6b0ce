"""Fault injection: the one seam through which tests (and anyone reproducing a failure) break a real run.

``FASTPOSE_FAULT`` holds comma-separated actions, each ``ACTION@step:N`` (global training step, 0-based):

- ``raise@step:3``          raise ``InjectedFault`` inside the loss at step 3 (a crash mid-epoch)
- ``raise@start``           raise ``InjectedFault`` while the run is prepared, before Lightning's ``fit``
- ``nan@step:2``            make ``loss_rot`` NaN at step 2; ``nan:loss_mask@step:2`` picks the term
- ``inf:loss_rot@step:2``   the same with +inf
- ``sleep:0.2@step:0``      sleep 0.2 s in every training step from step 0 on (keeps a run alive for
                            signal tests without making it big)
- ``sleep:5@start``         sleep 5 s while the run is prepared, before it opens the journal (a journal
                            outage can then be timed to meet a run's start)
- ``killsave@step:N``       SIGKILL the process while it writes the first checkpoint at or after step N
                            (the state is gathered, the file not yet replaced: the previous checkpoint
                            must survive, since Lightning writes through a temporary file and a move)
- ``fill@step:N``           at step N, fill the file system of the run directory: ``fault-fill`` there is
                            written until the disk is full, and stays (the run's next writes find no room)
- ``kill@gc:POINT``         SIGKILL ``fastpose journal gc`` at POINT of each removal (``GC_POINTS``):
                            ``marked`` (its gc_removals rows committed, no file touched), ``removing`` (after
                            the first file went), ``removed`` (every file gone, rows not yet updated),
                            ``done`` (the removal recorded, the run's rows not yet purged)

It is read once, when the LightningModule is built (``kill@gc``: when gc reaches the point); an unparsable
value is a user error. Nothing here
runs unless the variable is set.
"""

from __future__ import annotations

import errno
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from fastpose.errors import FastposeError

ENV = "FASTPOSE_FAULT"
TERMS = ("loss", "loss_mask", "loss_rot", "loss_trans", "loss_size")
START = -1  # the "step" of raise@start: before fit
GC_POINTS = ("marked", "removing", "removed", "done")
FILL_NAME = "fault-fill"


class InjectedFault(RuntimeError):
    """Raised by ``raise@step:N``; a stand-in for any bug in the loss."""


@dataclass(frozen=True)
class Fault:
    action: str  # raise | nan | inf | sleep | killsave | fill | kill
    step: int
    term: str = "loss_rot"  # nan/inf: which loss term is poisoned
    seconds: float = 0.0  # sleep: per step
    point: str = ""  # kill@gc: the point of a gc removal (GC_POINTS)

    def apply(self, terms: dict, step: int) -> dict:
        """Return ``terms`` with this fault applied if it fires at global ``step``."""
        if self.action in ("killsave", "fill", "kill"):
            return terms  # fire in on_checkpoint_save and on_train_step, not in the loss
        if self.action == "sleep":
            if self.step != START and step >= self.step:
                time.sleep(self.seconds)
            return terms
        if step != self.step or self.step == START:
            return terms
        if self.action == "raise":
            raise InjectedFault(f"injected by {ENV} at step {step}")
        bad = float("nan") if self.action == "nan" else float("inf")
        terms = dict(terms)
        terms[self.term] = terms[self.term] * bad
        if self.term != "loss":
            terms["loss"] = terms["loss"] + terms[self.term]
        return terms


def parse_faults(spec: str | None = None) -> tuple[Fault, ...]:
    """Parse ``spec`` (default: ``$FASTPOSE_FAULT``) into faults; bad syntax raises FastposeError."""
    spec = os.environ.get(ENV, "") if spec is None else spec
    faults = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        try:
            head, _, where = item.partition("@")
            kind, _, arg = head.partition(":")
            if kind == "raise" and where == "start":
                faults.append(Fault("raise", START))
                continue
            if kind == "sleep" and where == "start":
                faults.append(Fault("sleep", START, seconds=_seconds(arg)))
                continue
            if kind == "kill" and not arg and where.startswith("gc:") and where[3:] in GC_POINTS:
                faults.append(Fault("kill", START, point=where[3:]))
                continue
            if not where.startswith("step:") or kind not in ("raise", "nan", "inf", "sleep", "killsave", "fill"):
                raise ValueError
            step = int(where[len("step:") :])
            if kind == "sleep":
                faults.append(Fault("sleep", step, seconds=_seconds(arg)))
            elif kind in ("nan", "inf"):
                term = arg or "loss_rot"
                if term not in TERMS:
                    raise ValueError
                faults.append(Fault(kind, step, term=term))
            else:
                faults.append(Fault(kind, step))
        except ValueError:
            raise FastposeError(
                f"bad {ENV} item {item!r}: use raise@step:N, raise@start, nan[:TERM]@step:N, inf[:TERM]@step:N "
                f"sleep:SECONDS@step:N, sleep:SECONDS@start, killsave@step:N, fill@step:N or kill@gc:POINT with "
                f"TERM one of {', '.join(TERMS)} and POINT one of {', '.join(GC_POINTS)}"
            ) from None
    return tuple(faults)


def _seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(text)
    return value


def apply_faults(faults: tuple[Fault, ...], terms: dict, step: int) -> dict:
    for fault in faults:
        terms = fault.apply(terms, step)
    return terms


def on_checkpoint_save(faults: tuple[Fault, ...], step: int) -> None:
    """Called while a checkpoint is being written: ``killsave`` ends the process here with SIGKILL."""
    import signal

    if any(f.action == "killsave" and step >= f.step for f in faults):
        os.kill(os.getpid(), signal.SIGKILL)


def on_train_step(faults: tuple[Fault, ...], step: int, run_dir: str | os.PathLike[str]) -> None:
    """Called at each training step (before the loss): ``fill`` fills the run directory's disk here."""
    if any(f.action == "fill" and step == f.step for f in faults):
        fill_disk(Path(run_dir) / FILL_NAME)


def fill_disk(path: Path) -> None:
    """Append zeros to ``path`` until its file system has no room left (1 MiB blocks, then 4 KiB, then bytes)."""
    with open(path, "ab", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            block = bytes(size)
            while True:
                try:
                    if f.write(block) == 0:
                        break
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    break


def on_prepare(faults: tuple[Fault, ...] | None = None) -> None:
    """Called while a run is prepared (before ``fit``): ``raise@start`` fails it there, ``sleep:S@start`` waits."""
    for fault in parse_faults() if faults is None else faults:
        if fault.action == "sleep" and fault.step == START:
            time.sleep(fault.seconds)
        if fault.action == "raise" and fault.step == START:
            raise InjectedFault(f"injected by {ENV} before fit")


def on_gc(point: str) -> None:
    """Called by ``journal gc`` at each point of a removal (``GC_POINTS``): ``kill@gc:POINT`` ends the process
    there with SIGKILL, as a power cut or ``kill -9`` would."""
    if not os.environ.get(ENV):
        return
    import signal

    if any(f.action == "kill" and f.point == point for f in parse_faults()):
        os.kill(os.getpid(), signal.SIGKILL)
