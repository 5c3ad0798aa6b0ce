"""Train and resume orchestration: one journaled run, with failure capture around all of it.

``train(config)`` and ``resume(ref)`` return an ``Outcome`` whose ``exit_code`` the CLI exits with:

| status        | when                                                              | exit |
| ------------- | ----------------------------------------------------------------- | ---- |
| `completed`   | ``fit`` returned                                                  | 0    |
| `crashed`     | any exception after the run row exists (before or during fit)     | 1    |
| `diverged`    | a loss term became NaN/inf (``DivergedError``, names term/epoch/step) | 3 |
| `interrupted` | SIGINT / SIGTERM; ``last.ckpt`` holds the last finished step      | 130 / 143 |
| `completed`   | ``fit`` returned, but the journal was deleted, moved or replaced while it trained (or writes were lost): its writes are in the run's spool | 4 |

A crash the run's environment caused (a full disk, ``fastpose.errors.disk_full``: "no space left on device
while writing <file>"; permissions and the like, ``as_user_error``) is journaled with its traceback and shown as
one line; any other crash is a bug and prints its traceback. The closing line says where journal writes that
did not reach the journal are (``SpoolingJournal.unsaved_note``).

User errors (bad config, unknown run, no checkpoint, a weights file that does not fit) raise
``FastposeError`` before anything is written. Signals: the first SIGINT or SIGTERM during ``fit`` sets
Lightning's own graceful-stop flag (``trainer.received_sigterm``), which the loops check after each finished
step and raise ``SIGTERMException`` there; ``InterruptCheckpoint`` then saves ``last.ckpt``. A second
signal, or one outside ``fit``, raises ``KeyboardInterrupt`` at once.

DDP: only global rank zero opens the journal and creates the run. Lightning's DDP launcher re-runs this
command line for the other local ranks; rank zero hands them the resolved run directory, config and
checkpoint through ``$FASTPOSE_DDP_SPEC``, so they never resolve or journal anything themselves.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from fastpose.config import RunConfig
from fastpose.errors import FastposeError
from fastpose.training.resuming import ResumePoint, launch_rank, locate

SPEC_ENV = "FASTPOSE_DDP_SPEC"
# Ranks started by the cluster (srun, one task per GPU) do not inherit rank zero's environment: rank zero
# also writes the spec to this file and the other ranks wait for it (fastpose.studies.slurm sets it).
SPEC_FILE_ENV = "FASTPOSE_DDP_SPEC_FILE"
SPEC_WAIT_S = float(os.environ.get("FASTPOSE_DDP_SPEC_WAIT_S", "900"))
EXIT_CODES = {"completed": 0, "crashed": 1, "diverged": 3, "journal_changed": 4, "SIGINT": 130, "SIGTERM": 143}
def _heartbeat_s() -> float:
    from fastpose.environment import positive_seconds

    return positive_seconds("FASTPOSE_HEARTBEAT_S", 15.0)  # the journal's lost limit is minutes


@dataclass(frozen=True)
class Outcome:
    status: str
    exit_code: int
    run_id: int | None = None
    label: str | None = None
    run_dir: Path | None = None
    message: str = ""


def command_line() -> str:
    return shlex.join(["fastpose", *sys.argv[1:]])


# --------------------------------------------------------------------------------------------- signals
class StopSignals:
    """SIGINT/SIGTERM handler for the whole run; see the module docstring."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.trainer: Any = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.received is None
        if first:
            self.received = signal.Signals(signum).name
        if first and self.trainer is not None and self.trainer.state.status.value == "running":
            # Lightning's graceful stop: the loops raise SIGTERMException after the current step.
            self.trainer._signal_connector.received_sigterm = True
            print(f"\n{self.received} received: stopping after this step (again to stop at once)", file=sys.stderr)
            return
        raise KeyboardInterrupt(self.received)


# --------------------------------------------------------------------------------------------- public
def train(
    config: RunConfig,
    *,
    note: str | None = None,
    cwd: str | Path | None = None,
    tags: tuple[str, ...] = (),
    sweep_cell: dict[str, Any] | None = None,
    origin: str | None = None,
) -> Outcome:
    """Start a journaled training run of ``config``, tagged with ``tags``; ``sweep_cell``
    (``{"sweep": row id, "cell": {axis: value}}``) records it as a cell of a sweep; ``origin`` (``train
    --from``: whose config it started from) is noted on the run after ``note``."""
    spec = _child_spec()
    if spec is not None:
        return _run_child(spec)
    config.validate()
    return _run(config, note=note, cwd=Path(cwd or os.getcwd()), tags=tags, sweep_cell=sweep_cell, origin=origin)


def resume(
    ref: str,
    *,
    epochs: int | None = None,
    name: str | None = None,
    note: str | None = None,
    cwd: str | Path | None = None,
    updates: dict[str, Any] | None = None,
    point: ResumePoint | None = None,
) -> Outcome:
    """Continue run ``ref`` from its ``last.ckpt`` as a new run linked to it (``parent_id``); the new run
    keeps the parent's tags and sweep cell. ``updates``: config keys to change (display options). ``point``:
    what ``fastpose.training.resuming.locate`` found already (the command line looks before importing torch)."""
    spec = _child_spec()
    if spec is not None:
        return _run_child(spec)
    from fastpose.journal.store import JournalStore

    point = point or locate(ref, epochs=epochs, name=name, updates=updates)
    config, ckpt = point.config, point.checkpoint
    done = checkpoint_next_epoch(ckpt)  # epochs finished (0-based index of the next one)
    if config.train.epochs <= done:
        raise FastposeError(
            f"run {point.parent.label} has trained {done} of {config.train.epochs} epochs; "
            f"pass --epochs N with N > {done} to train further"
        )
    store = JournalStore.open()
    return _run(config, note=note, cwd=Path(cwd or os.getcwd()), parent=point.parent, ckpt_path=ckpt, store=store)


def checkpoint_next_epoch(path: Path) -> int:
    """The 0-based epoch a Lightning checkpoint continues with: its own epoch if it stopped mid-epoch,
    the next one if that epoch's training batches were all done. Read with the loader that never runs code
    from the file (``fastpose.pose.checkpoint``); a file that is not a Lightning checkpoint is refused."""
    from fastpose.pose.checkpoint import load_torch_file

    ckpt = load_torch_file(path)
    try:
        epoch = int(ckpt.get("epoch", 0))
        progress = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
        if not isinstance(ckpt.get("state_dict"), dict) or epoch < 0:
            raise TypeError("no state_dict")
        return epoch + 1 if progress.get("is_last_batch") else epoch
    except (AttributeError, TypeError, ValueError, OverflowError):
        raise FastposeError(f"checkpoint {str(path)!r} is not a Lightning checkpoint of fastpose train") from None


def check_checkpoint_fits(model: Any, path: Path) -> None:
    """Refuse (one line, before anything is written) a checkpoint whose weights do not fit ``model``, the
    network its run's config builds: Lightning would otherwise fail inside ``fit``, as a crashed run."""
    from fastpose.pose.checkpoint import load_torch_file, state_mismatch

    weights = load_torch_file(path)["state_dict"]
    state = {k[len("model."):]: v for k, v in weights.items() if isinstance(k, str) and k.startswith("model.")}
    problems = state_mismatch(model, state)
    if problems:
        raise FastposeError(f"checkpoint {str(path)!r} does not fit the network of its run's config: "
                            + "; ".join(problems))


# --------------------------------------------------------------------------------------------- the run
def _run(
    config: RunConfig,
    *,
    note: str | None,
    cwd: Path,
    parent: Any = None,
    ckpt_path: Path | None = None,
    store: Any = None,
    tags: tuple[str, ...] = (),
    sweep_cell: dict[str, Any] | None = None,
    origin: str | None = None,
) -> Outcome:
    from fastpose.training.machine import describe, environment, set_threads

    threads = set_threads(config)  # first: torch's inter-op pool is sized before any parallel work
    # A setting Lightning refuses is bad input: refused before any row or directory. The trainer built to
    # check them names the device and precision the run will train on.
    planned = environment(check_trainer_settings(config), threads, "at start")
    with StopSignals() as stop:
        # Built before the run row exists: a weights file that does not fit is a user error, nothing written.
        prepared, prepare_error = None, None
        try:
            prepared = _prepare(config)
        except FastposeError:
            raise
        except Exception as exc:  # noqa: BLE001 - journaled as crashed below
            prepare_error = exc
        if ckpt_path is not None and prepared is not None:
            check_checkpoint_fits(prepared.model, ckpt_path)  # a resume that cannot load: before the row

        from fastpose.journal.db import journal_home
        from fastpose.journal.git import capture_git, capture_source
        from fastpose.journal.store import JournalStore

        store = store or JournalStore.open()
        git = capture_git(cwd)
        source = capture_source(cwd)  # the fastpose code itself, when it is a git checkout (editable install)
        label, run_dir, dir_error = _make_run_dir(journal_home(), config.label())
        try:
            run = store.start_run(
                name=config.name,
                label=label,
                config=config.to_dict(),
                run_dir=str(run_dir),
                command=command_line(),
                git=git,
                versions=_versions(),
                parent_id=parent.id if parent is not None else None,
                checkpoint=str(ckpt_path) if ckpt_path else None,
                source=source,
                environment=planned,
            )
        except BaseException:
            _remove_empty_run_dir(run_dir)  # never a run directory without a journal row
            raise
        print(f"run {run.id} {label} {describe(planned)} ({run_dir})", file=sys.stderr)

        from fastpose.journal.spool import SpoolingJournal
        from fastpose.training.callbacks import JournalCallback

        journal_store = store
        # Every write after the run row goes through the spool, bound to this journal: an outage never stops
        # training, and a journal deleted or replaced meanwhile never receives (or loses) the run's writes.
        store = SpoolingJournal.for_run(run_dir, store.url, journal_id=store.journal_id(), end_warning=False)
        state: dict[str, Any] = {"epoch": None, "step": None}
        journal = JournalCallback(store, run.id, heartbeat_s=_heartbeat_s())
        try:
            _file_run(journal_store, run.id, parent, tags, sweep_cell)
            journal_store.close()  # its connections would hold on to the journal file even if it were deleted
            if note:
                store.add_note(note, run_id=run.id)
            if origin:
                store.add_note(origin, run_id=run.id)
            if parent is not None:
                store.add_note(describe_resume(store, parent, config, git, ckpt_path), run_id=run.id)
            if prepare_error is not None:
                raise prepare_error
            if dir_error is not None:
                raise dir_error
            os.environ[SPEC_ENV] = json.dumps(
                {"config": config.to_dict(), "run_dir": str(run_dir), "ckpt_path": str(ckpt_path or "")}
            )
            _publish_spec(os.environ[SPEC_ENV])
            _fit(config, prepared, run_dir, ckpt_path, stop, journal=journal, state=state, threads=threads)
            store.finish(run.id, status="completed", epoch=state["epoch"], step=state["step"])
            return _done(store, run, "completed", EXIT_CODES["completed"], run_dir)
        except (KeyboardInterrupt, SystemExit) as exc:
            if stop.received is None and not isinstance(exc, KeyboardInterrupt):
                return _crashed(store, run, exc, state, run_dir)
            signame = stop.received or "SIGINT"
            saved = (run_dir / "checkpoints" / "last.ckpt").is_file()
            message = f"{signame} at epoch {state['epoch']}, step {state['step']}; " + (
                "last.ckpt holds the last finished step" if saved else "no checkpoint written yet"
            )
            store.finish(run.id, status="interrupted", epoch=state["epoch"], step=state["step"], message=message)
            return _done(store, run, "interrupted", EXIT_CODES[signame], run_dir, message)
        except Exception as exc:  # noqa: BLE001 - every failure is journaled
            from fastpose.training.module import DivergedError

            if isinstance(exc, DivergedError):
                message = f"non-finite loss: {exc}"
                store.finish(run.id, status="diverged", epoch=exc.epoch, step=exc.step, message=message)
                return _done(store, run, "diverged", EXIT_CODES["diverged"], run_dir, message)
            return _crashed(store, run, exc, state, run_dir)
        finally:
            os.environ.pop(SPEC_ENV, None)
            journal.stop_heartbeat()
            store.close()
            journal_store.close()


def _file_run(store: Any, run_id: int, parent: Any, tags: tuple[str, ...], sweep_cell: dict | None) -> None:
    """Tags and sweep cell of the new run; a resumed run first takes its parent's."""
    if parent is None and not tags and sweep_cell is None:
        return
    from fastpose.journal import sweeps
    from fastpose.journal.tags import add_tags

    if parent is not None:
        sweeps.inherit(store, parent.id, run_id)
    if sweep_cell is not None:
        sweeps.attach(store, run_id, sweep_cell["sweep"], sweep_cell["cell"])
    if tags:
        add_tags(store, run_id, tags)


def _crashed(store: Any, run: Any, exc: BaseException, state: dict, run_dir: Path) -> Outcome:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    failure = environment_failure(exc, run_dir)
    if failure is None:  # a bug: its traceback, on stderr and in the journal
        store.crash(run.id, type(exc).__name__, str(exc), tb, epoch=state["epoch"], step=state["step"])
        sys.stderr.write(tb)
        return _done(store, run, "crashed", EXIT_CODES["crashed"], run_dir, f"{type(exc).__name__}: {exc}",
                     show_message=False)
    from fastpose.errors import DiskFullError

    kind = type(failure).__name__ if isinstance(failure, DiskFullError) else type(exc).__name__
    store.crash(run.id, kind, str(failure), tb, epoch=state["epoch"], step=state["step"])
    if os.environ.get("FASTPOSE_DEBUG"):
        sys.stderr.write(tb)
    return _done(store, run, "crashed", EXIT_CODES["crashed"], run_dir, str(failure))


def environment_failure(exc: BaseException, run_dir: Path | None = None) -> FastposeError | None:
    """The crash ``exc`` as one line when the run's environment caused it, else None (a bug).

    A full disk anywhere in its chain of causes comes first (``errors.disk_full``, naming the file that was
    being written, or ``run_dir``); then whatever ``errors.as_user_error`` recognises (permissions, a
    read-only file system, ...).
    """
    from fastpose.errors import disk_full
    from fastpose.journal.failures import as_user_error

    return disk_full(exc, where=run_dir) or as_user_error(exc)


def _done(store: Any, run: Any, status: str, code: int, run_dir: Path, message: str = "", *,
          show_message: bool = True) -> Outcome:
    """Print the run's closing line (status, primary metric, why, where unsaved journal writes are)."""
    note = store.unsaved_note() if hasattr(store, "unsaved_note") else None
    line = f"run {run.id} {run.label}: {status}"
    if note is None:  # with writes outside the journal, what it holds is not the run's last word
        try:
            summaries = store.summaries(run.id)
            monitor = (run.config or {}).get("train", {}).get("monitor", "val/rot_err_median")
            if monitor in summaries:
                final, best = _final_best(summaries[monitor])
                line += f"; {monitor} final {final:.3g}, best {best:.3g}"
        except Exception:  # noqa: BLE001 - the summary line is a courtesy
            pass
    if message and show_message:
        line += f" ({message})"
    if note is not None:
        line += f"; {note}"
        if status == "completed" and getattr(store, "needs_attention", False):
            code = EXIT_CODES["journal_changed"]
    print(line, file=sys.stderr)
    return Outcome(status, code, run.id, run.label, run_dir, message)


def _final_best(summary: Any) -> tuple[float, float]:
    if isinstance(summary, (tuple, list)):
        return float(summary[0]), float(summary[1])
    return float(summary.final), float(summary.best)


def check_trainer_settings(config: RunConfig, *, on_this_machine: bool = True) -> pl.Trainer | None:
    """Build a Trainer with the run's accelerator, devices, strategy, nodes and precision and return it (the
    device and precision it resolved are the run's planned environment): a value Lightning refuses is a
    ConfigError naming it, raised before the run row or directory exists.

    ``on_this_machine=False`` (settings for cluster jobs, checked where they are submitted, which may have no
    GPU): only Lightning's names are checked (accelerator, strategy, precision) and the device count's form,
    not whether this machine has the devices."""
    from fastpose.config import ConfigError
    from fastpose.training.machine import no_fill_of_new_memory

    _quiet_warnings()
    t = config.train
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not on_this_machine:
                _check_trainer_names(t.accelerator, t.strategy, t.precision, parse_devices(t.devices))
                return None
            # deterministic as the run's own trainer: Lightning sets torch's flags from it (recorded)
            probe = pl.Trainer(accelerator=t.accelerator, devices=parse_devices(t.devices), strategy=t.strategy,
                               num_nodes=t.num_nodes, precision=t.precision, logger=False,
                               enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                               max_epochs=1, deterministic="warn")
            no_fill_of_new_memory()
            return probe
    except Exception as exc:  # noqa: BLE001 - MisconfigurationException, ValueError, RuntimeError...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"Lightning refuses --accelerator {t.accelerator!r} --devices {t.devices!r} --strategy {t.strategy!r} "
            f"--num-nodes {t.num_nodes} --precision {t.precision!r}: {first}"
        ) from None


def _check_trainer_names(accelerator: str, strategy: str, precision: str, devices: Any) -> None:
    """The checks of Lightning's accelerator connector that do not depend on the hardware present."""
    from pytorch_lightning.accelerators import AcceleratorRegistry
    from pytorch_lightning.strategies import StrategyRegistry
    from pytorch_lightning.trainer.connectors.accelerator_connector import _convert_precision_to_unified_args

    if accelerator not in ("auto", "gpu", *AcceleratorRegistry.available_accelerators()):
        raise ValueError(f"invalid accelerator name {accelerator!r}; Lightning knows auto, gpu, "
                         + ", ".join(AcceleratorRegistry.available_accelerators()))
    if strategy.lower() != "auto" and strategy.lower() not in StrategyRegistry.available_strategies():
        raise ValueError(f"invalid strategy name {strategy!r}")
    _convert_precision_to_unified_args(precision)
    if devices in ([], 0, "0"):
        raise ValueError(f"devices={devices!r} is not a valid input")


def _remove_empty_run_dir(run_dir: Path) -> None:
    """Remove a run directory created for a run whose journal row could not be written (and its day
    directory and ``runs/``, when they are empty too). Only empty directories are removed."""
    for path in (run_dir, run_dir.parent, run_dir.parent.parent):
        try:
            path.rmdir()
        except OSError:
            return


def _make_run_dir(home: Path, label: str) -> tuple[str, Path, OSError | None]:
    """``<home>/runs/<label>``, created atomically; a label taken in the same minute gets ``-2``, ``-3``..."""
    from fastpose.journal.db import run_dir_for

    base = label
    for n in range(1, 1000):
        label = base if n == 1 else f"{base}-{n}"
        run_dir = run_dir_for(home, label)  # refuses a label that would leave <home>/runs
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            return label, run_dir, None
        except FileExistsError:
            continue
        except OSError as exc:  # journaled as the run's crash: the run row tells the user what happened
            return label, run_dir, exc
    raise FastposeError(f"too many runs labelled {base!r}")


def _versions() -> dict[str, str]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": pl.__version__}


# --------------------------------------------------------------------------------------------- Lightning
@dataclass
class Prepared:
    model: Any
    datamodule: Any


def _prepare(config: RunConfig) -> Prepared:
    from fastpose.training.datamodule import PoseDataModule
    from fastpose.training.module import build_model

    from fastpose.faults import on_prepare

    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    on_prepare()
    datamodule = PoseDataModule(config)
    datamodule.setup("fit")  # builds the datasets now: a bad data root is reported before the run starts
    return Prepared(build_model(config), datamodule)


def parse_devices(value: str) -> Any:
    text = str(value).strip()
    if "," in text:
        return [int(part) for part in text.split(",") if part.strip()]
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def _limit(value: float) -> float | int:
    """Lightning reads an int as a batch count and a float as a fraction: ``2.0`` means 2 batches, ``1.0`` all."""
    if isinstance(value, int) or (value > 1 and float(value).is_integer()):
        return int(value)
    return float(value)


def build_trainer(config: RunConfig, run_dir: Path, extra_callbacks: list) -> pl.Trainer:
    from pytorch_lightning.callbacks import LearningRateMonitor
    from pytorch_lightning.loggers import TensorBoardLogger

    from fastpose.metrics import direction
    from fastpose.training.callbacks import (
        CheckpointsWritten, InterruptCheckpoint, LastCheckpoint, LocalCheckpointIO, SharedCheckpoint,
    )
    from fastpose.training.display import ConsoleReport, ProgressBar
    from fastpose.faults import TERMS
    from fastpose.training.tblog import HParamsSummary, PoseImages, StepLosses

    t = config.train
    ckpt_dir = run_dir / "checkpoints"
    # One file written per epoch end: the first checkpoint due writes it, the others link it (SharedCheckpoint).
    # The best goes first (Lightning keeps checkpoint callbacks in this order), so last.ckpt knows the best.
    written = CheckpointsWritten()
    callbacks = [
        SharedCheckpoint(
            written, dirpath=ckpt_dir, filename="best-epoch{epoch:03d}", monitor=config.train.monitor,
            mode=direction(config.train.monitor),
            save_top_k=1, auto_insert_metric_name=False,
        ),
        LastCheckpoint(ckpt_dir, written),
        InterruptCheckpoint(ckpt_dir / "last.ckpt"),
        PoseImages(t.log_images),
        StepLosses(TERMS),
        HParamsSummary(config),
        LearningRateMonitor(logging_interval="step"),
        *extra_callbacks,
    ]
    if t.save_every:
        callbacks.append(SharedCheckpoint(
            written, dirpath=ckpt_dir, filename="epoch{epoch:03d}", every_n_epochs=t.save_every,
            save_top_k=-1, auto_insert_metric_name=False,
        ))
    report = ConsoleReport(config)
    if t.progress_bar:
        callbacks.append(ProgressBar(report.clock))  # the bar shows the run's time left, as the epoch line does
    callbacks.append(report)  # after the bar: the epoch's bar closes before its line prints
    logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="tensorboard", default_hp_metric=False)
    trainer = pl.Trainer(
        default_root_dir=str(run_dir),
        max_epochs=t.epochs,
        accelerator=t.accelerator,
        devices=parse_devices(t.devices),
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        limit_train_batches=_limit(t.limit_train_batches),
        limit_val_batches=_limit(t.limit_val_batches),
        logger=logger,
        callbacks=callbacks,
        plugins=[LocalCheckpointIO()],
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,  # ConsoleReport prints the model in two lines
        num_sanity_val_steps=0,
        log_every_n_steps=1,  # Lightning logs only the learning rate per step; StepLosses batches the losses
        deterministic="warn",
    )
    from fastpose.training.machine import no_fill_of_new_memory

    no_fill_of_new_memory()  # after the Trainer: it turned torch's deterministic mode (and the fill) on
    return trainer


def _quiet_warnings() -> None:
    import logging

    # Lightning's start-up chatter (accelerators found, tips, "fit stopped: max_epochs reached"); warnings stay.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    # Expected on CPU with synthetic data, and on resume into a new run directory: noise, not news.
    for pattern in (
        ".*isinstance.treespec, LeafSpec.*",
        ".*index_reduce.. is in beta.*",
        ".*does not have many workers.*",
        ".*The dirpath has changed from.*",
        ".*is smaller than the logging interval.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def _fit(
    config: RunConfig,
    prepared: Prepared,
    run_dir: Path,
    ckpt_path: Path | None,
    stop: StopSignals,
    *,
    journal: Any,
    state: dict[str, Any],
    threads: Any,
) -> pl.Trainer:
    """Build the trainer and fit; ``journal`` is the JournalCallback on rank zero, None elsewhere."""
    from fastpose.training.machine import RecordEnvironment
    from fastpose.training.module import PoseModule

    _quiet_warnings()
    extra = [_StateTracker(state)] + ([journal, RecordEnvironment(journal, threads)] if journal is not None else [])
    trainer = build_trainer(config, run_dir, extra)
    stop.trainer = trainer
    restore_hook = _quiet_kept_thread_errors()
    try:
        module = PoseModule(prepared.model, config)
        trainer.fit(module, datamodule=prepared.datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None,
                    weights_only=True)  # never run code from a checkpoint (fastpose.pose.checkpoint)
    finally:
        restore_hook()
        stop.trainer = None
        if journal is not None:
            journal.stop_heartbeat()  # the epochs' queued journal writes land before the run's end does
        if state["epoch"] is None:
            state["epoch"] = trainer.current_epoch
        state["step"] = trainer.global_step
    return trainer


def _quiet_kept_thread_errors() -> Any:
    """Until the returned function is called: a thread that dies of an ``OSError`` it keeps for its owner
    prints no traceback. TensorBoard's event writer does so (``thread.exception``) and its owner re-raises the
    error at the next write, which ends the run with one line naming the file (``environment_failure``)."""
    import threading

    previous = threading.excepthook

    def hook(args: Any) -> None:
        if isinstance(args.exc_value, OSError) and getattr(args.thread, "exception", None) is args.exc_value:
            return
        previous(args)

    threading.excepthook = hook

    def restore() -> None:
        threading.excepthook = previous

    return restore


class _StateTracker(pl.Callback):
    """Keeps the epoch in progress and the global step for the crash/interrupt record."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.state["epoch"], self.state["step"] = trainer.current_epoch, trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.state["epoch"], self.state["step"] = trainer.current_epoch, trainer.global_step


# --------------------------------------------------------------------------------------------- DDP ranks
def _child_spec() -> dict | None:
    if launch_rank() == 0:
        return None
    raw = os.environ.get(SPEC_ENV)
    if not raw and os.environ.get(SPEC_FILE_ENV):
        raw = _wait_for_spec(Path(os.environ[SPEC_FILE_ENV]))
    return json.loads(raw) if raw else {}


def _publish_spec(text: str) -> None:
    """Rank zero: also write the spec where cluster-started ranks look for it (``$FASTPOSE_DDP_SPEC_FILE``)."""
    target = os.environ.get(SPEC_FILE_ENV)
    if not target:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # atomic: a waiting rank never reads half a file


def _wait_for_spec(path: Path) -> str:
    deadline = time.monotonic() + SPEC_WAIT_S
    while time.monotonic() < deadline:
        if path.is_file():
            return path.read_text(encoding="utf-8")
        time.sleep(0.5)
    raise FastposeError(f"rank {launch_rank()}: rank zero wrote no spec to {path} within {SPEC_WAIT_S:.0f} s")


def _run_child(spec: dict) -> Outcome:
    """A non-zero rank: train exactly what rank zero decided; never touch the journal."""
    if not spec:
        raise FastposeError(
            f"rank {launch_rank()} started without {SPEC_ENV}; start multi-process runs through Lightning's "
            "launcher (--strategy ddp) or set the spec from rank zero"
        )
    config = RunConfig.from_dict(spec["config"])
    run_dir = Path(spec["run_dir"])
    ckpt_path = Path(spec["ckpt_path"]) if spec.get("ckpt_path") else None
    state: dict[str, Any] = {"epoch": None, "step": None}
    from fastpose.training.machine import set_threads

    threads = set_threads(config)
    with StopSignals() as stop:
        try:
            _fit(config, _prepare(config), run_dir, ckpt_path, stop, journal=None, state=state, threads=threads)
        except (KeyboardInterrupt, SystemExit):
            return Outcome("interrupted", EXIT_CODES.get(stop.received or "SIGINT", 130), run_dir=run_dir)
    return Outcome("completed", 0, run_dir=run_dir)


# --------------------------------------------------------------------------------------------- resume note
def describe_resume(store: Any, parent: Any, config: RunConfig, git: Any, ckpt_path: Path | None) -> str:
    """The resumed run's note, one short line: whose checkpoint it continues (the file itself is the run's
    ``checkpoint``, shown by ``journal show``) and what changed in code or config since the parent."""
    from fastpose.screens.comparison import parent_git
    from fastpose.config import config_changes

    parts = [f"resumed from #{parent.id} {parent.name} ({parent.status})"]
    before = parent_git(store, parent)
    code = []
    if before is None or not getattr(git, "is_repo", False):
        code.append("code: no git state to compare")
    else:
        if before.commit != git.commit:
            code.append(f"code: commit {_short(before.commit)} -> {_short(git.commit)}")
        if (before.diff or "") != (git.diff or ""):
            code.append("code: uncommitted changes differ from the parent's")
    parts.extend(code or ["code: unchanged"])
    changes = config_changes(parent.config, config.to_dict())
    parts.append("config: " + (", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changes) if changes else "unchanged"))
    return "; ".join(parts)


def _short(sha: str | None) -> str:
    return (sha or "none")[:10]
