"""Callbacks own the side effects of a run: the journal, the checkpoints, the interruption checkpoint.

TensorBoard's extras (per-step losses, HParams, the pose panel) are in ``fastpose.training.tblog``, what is
printed while training in ``fastpose.training.display``.

``JournalCallback`` acts on global rank zero only (the runner creates it only there, and it checks again),
so a DDP run writes exactly one run row. Journal writes never stop training: a failed write is reported
on stderr once per kind and training goes on (the reliability work adds a spool here).
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator
from weakref import proxy

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException



class JournalCallback(pl.Callback):
    """Per-epoch metrics and the heartbeat into the journal, written by one daemon thread.

    Training never waits on the journal (a SQLite lock held by other runs, a slow server): at each epoch end
    the values are read on the training thread and handed to the thread, which writes them in order (the
    metrics, then a heartbeat with the epoch and step) and beats every ``heartbeat_s`` while idle.
    ``stop_heartbeat()`` (fit end, any exception, and the runner before it journals the run's end) first
    drains what is queued, so a run's end is never journaled before its last epoch.
    """

    DRAIN_S = 120.0  # the longest the end of a run waits for queued writes (each is bounded by its timeouts)

    def __init__(self, store: Any, run_id: int, heartbeat_s: float = 15.0) -> None:
        from fastpose.journal.records import MetricPoint

        self.store, self.run_id, self.heartbeat_s = store, run_id, heartbeat_s
        self._point = MetricPoint
        self.epoch: int | None = None
        self.step: int | None = None
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()

    # ----------------------------------------------------------------- journal access
    def _write(self, what: str, fn: Callable, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the journal must never kill a training run
            if what not in self._warned:
                self._warned.add(what)
                print(f"warning: journal {what} failed ({type(exc).__name__}: {exc}); training goes on",
                      file=sys.stderr)

    def _beat(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.heartbeat_s)
            except queue.Empty:
                self._write("heartbeat", self.store.heartbeat, self.run_id, epoch=self.epoch, step=self.step)
                continue
            if job is None:
                return
            job()

    def _submit(self, job: Callable[[], None]) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(job)
        else:  # no writer thread (never started, or stopped): write now
            job()

    def start_heartbeat(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="fastpose-journal", daemon=True)
            self._thread.start()

    def stop_heartbeat(self) -> None:
        """Write what is queued, then stop the thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout=self.DRAIN_S)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch, self.step = trainer.current_epoch, trainer.global_step
        if trainer.is_global_zero:
            self.start_heartbeat()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.epoch, self.step = trainer.current_epoch, trainer.global_step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Validation ran inside this epoch, before this hook: train/* epoch means and val/* are all here.
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        epoch, step = trainer.current_epoch, trainer.global_step
        points = [
            self._point(name, float(value), epoch, step)
            for name, value in sorted(trainer.callback_metrics.items())
            if name.startswith(("train/", "val/")) and _is_scalar(value)
        ]

        def write() -> None:
            self._write("metrics", self.store.log_metrics, self.run_id, points)
            self._write("heartbeat", self.store.heartbeat, self.run_id, epoch=epoch, step=step)

        self._submit(write)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stop_heartbeat()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.stop_heartbeat()


class CheckpointsWritten:
    """What the run's checkpoint callbacks share: the file written last and the global step it holds."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.path: str | None = None


class SharedCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that writes a file at most once per global step for the whole run.

    At an epoch end several checkpoints are due at the same step (the best, ``last.ckpt``, every
    ``--save-every``), and Lightning dumps the same trainer state for each: serialising it again is the
    largest fixed cost of an epoch. The first callback due writes the file (atomically, as Lightning does);
    each later one hard-links it under its own name (a copy where the filesystem has no links), through a
    temporary name and an atomic rename, so no name ever points at a partial file. The callbacks' own
    bookkeeping in the file is the first writer's (the best callback runs first, so ``last.ckpt`` knows the
    best so far); the weights, optimizer and loop state are the step's either way. The decision depends only
    on the global step, the same on every rank, and only global rank zero touches files (then a barrier).

    ``key_name`` keeps the state key of the class it replaces, so checkpoints written before still resume
    with their callback state.
    """

    key_name = "ModelCheckpoint"

    def __init__(self, written: CheckpointsWritten, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.written = written

    def _generate_state_key(self, **kwargs: Any) -> str:
        return f"{self.key_name}{kwargs!r}"

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        source = self.written.path
        if self.written.step != trainer.global_step or source is None:
            super()._save_checkpoint(trainer, filepath)
            self.written.step, self.written.path = trainer.global_step, filepath
            return
        if trainer.is_global_zero and os.path.abspath(source) != os.path.abspath(filepath):
            link_or_copy(source, filepath)
        trainer.strategy.barrier("SharedCheckpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


@contextlib.contextmanager
def replaced_atomically(target: str | Path, tmp: str | Path) -> Iterator[Path]:
    """Write ``tmp`` in the block; it is renamed over ``target`` when the block succeeds (atomic on POSIX, so a
    process killed mid-write leaves the previous file whole) and removed when it fails."""
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """A write to ``path``: a full disk anywhere in it (however the library reports it) is a
    ``DiskFullError`` naming ``path``, the file the run was writing."""
    from fastpose.errors import disk_full

    try:
        yield
    except Exception as exc:
        full = disk_full(exc)
        if full is None:
            raise
        from fastpose.errors import DiskFullError

        raise DiskFullError(path, full.code) from exc


def link_or_copy(source: str | Path, target: str | Path) -> None:
    """Make ``target`` the same file as ``source``: a hard link, else a copy; atomic (temp name + rename)."""
    with writing(target), replaced_atomically(target, f"{target}.link-tmp") as tmp:
        try:
            os.link(source, tmp)
        except FileExistsError:
            os.remove(tmp)
            os.link(source, tmp)
        except OSError:  # no hard links here (some network and FUSE filesystems): copy
            shutil.copyfile(source, tmp)


class LocalCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` for a local run directory, with one copy fewer.

    Lightning serialises into memory, copies that buffer out and writes it through fsspec; this streams
    ``torch.save`` into a temporary file beside the target and renames it over the target (atomic on
    POSIX), so a process killed while writing still leaves the previous file whole. About half the CPU
    time of a save. Loading is Lightning's own.

    ``torch.save`` writes into a file object opened here: a full disk then surfaces as Python's ``OSError``
    behind torch's ``RuntimeError`` (with a file name, torch's own writer says only "iostream error") and
    becomes a ``DiskFullError`` naming the checkpoint; the temporary file is closed and removed before the
    error leaves, so the space it took is free again for the run's crash record.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with replaced_atomically(path, path.with_name(f"{path.name}.tmp-{os.getpid()}")) as tmp:
                with open(tmp, "wb") as f:
                    torch.save(checkpoint, f)


class LastCheckpoint(SharedCheckpoint):
    """``last.ckpt`` after every epoch, overwritten in place (full trainer state, what ``resume`` uses).

    Lightning 2.6 writes ``save_last`` only in steps where a top-k checkpoint was also written, so a run whose
    best epoch came early would resume from that early epoch; this is its own every-epoch checkpoint instead
    (its own class, so its state key never clashes with ``--save-every``'s ModelCheckpoint).
    """

    key_name = "LastCheckpoint"

    def __init__(self, dirpath: Path, written: CheckpointsWritten | None = None) -> None:
        super().__init__(written or CheckpointsWritten(), dirpath=dirpath, filename="last", save_top_k=1,
                         enable_version_counter=False)


class InterruptCheckpoint(pl.Callback):
    """On a graceful stop (SIGINT/SIGTERM turned into Lightning's SIGTERMException at a step boundary),
    save ``last.ckpt``: the state after the last finished step, full trainer state, resumable.

    Runs on every rank (saving is collective under DDP; rank zero writes the file).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.saved = False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.global_step > 0:
            trainer.save_checkpoint(self.path, weights_only=False)
            self.saved = True


def _is_scalar(value: Any) -> bool:
    """A finite number (NaN/inf stay in TensorBoard; the journal keeps only real values)."""
    try:
        return torch.as_tensor(value).numel() == 1 and math.isfinite(float(value))
    except (TypeError, ValueError, RuntimeError):
        return False
