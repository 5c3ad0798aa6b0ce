"""What a training run prints while it runs: the model in two lines, the progress bar, one line per epoch.

- ``ConsoleReport`` (global rank zero): at fit start, the model (``FastPoseNet``, encoder, what was left
  out, parameters by part); after each epoch's validation, one line with the primary metric
  (``train.monitor``) first with its best so far, then the validation errors and rates, ``val/loss`` and
  ``train/loss`` (the epoch's means): the screens ``fastpose.screens.epoch`` drawn by
  ``fastpose.screens.terminal.epoch``, on stderr through ``safe_console`` (config values are user text), with
  or without the progress bar, so a sweep cell's log has them too.
- ``ProgressBar``: Lightning's rich bar without ``v_num`` (the logger's version, which for our
  ``tensorboard`` directory read ``oard``), with the whole run's time left (``run``) beside the epoch's own;
  each epoch's bar is closed when the epoch ends, so the epoch's line prints under it instead of being drawn
  through the live display. Epochs are counted from 1 on both (``Epoch 2/2``), as in every screen; the
  journal and the checkpoint names keep Lightning's 0-based index.
- ``RunClock``: the whole run's time left, from the epochs finished in this process (validation included):
  their mean times the epochs left; during the first epoch, from its training batches so far.

Lightning's own model summary is off (``enable_model_summary=False``): its FLOPs and mode columns were
zeros and noise, and it listed the metric object as a layer.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar

from fastpose.config import RunConfig


class RunClock:
    """The whole run's time left (see the module docstring); ``ConsoleReport`` keeps it, the bar reads it."""

    def __init__(self) -> None:
        self.started: float | None = None  # when training started in this process
        self.first_epoch = 0  # the epoch it started at (a resumed run's is its parent's next)
        self.epoch_started: float | None = None
        self.finished: list[float] = []  # seconds of each epoch finished in this process

    def train_start(self, trainer: pl.Trainer) -> None:
        self.started = self.epoch_started = time.monotonic()
        self.first_epoch = trainer.current_epoch

    def epoch_start(self) -> None:
        self.epoch_started = time.monotonic()

    def epoch_end(self, trainer: pl.Trainer) -> tuple[float | None, float | None]:
        """``(this epoch's seconds, the run's seconds left)`` at the end of an epoch."""
        if self.epoch_started is None:
            return None, None
        self.finished.append(time.monotonic() - self.epoch_started)
        left = max(0, (trainer.max_epochs or 0) - trainer.current_epoch - 1)
        return self.finished[-1], left * sum(self.finished) / len(self.finished)

    def remaining(self, trainer: pl.Trainer) -> float | None:
        """The run's seconds left now, mid-epoch; None before there is anything to go by."""
        if self.epoch_started is None or not trainer.max_epochs or trainer.max_epochs < 0:
            return None
        batches = trainer.num_training_batches
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        fraction = min(1.0, done / batches) if isinstance(batches, int) and batches > 0 else 0.0
        left = max(0.0, trainer.max_epochs - trainer.current_epoch - fraction)
        if self.finished:
            return left * sum(self.finished) / len(self.finished)
        if fraction <= 0:
            return None
        return left * (time.monotonic() - self.epoch_started) / fraction


class ProgressBar(RichProgressBar):
    """``RichProgressBar(leave=True)`` without ``v_num``, with the run's time left (``clock``), each epoch's
    bar closed at the epoch's end."""

    def __init__(self, clock: RunClock | None = None) -> None:
        super().__init__(leave=True)
        self.clock = clock

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        left = self.clock.remaining(trainer) if self.clock is not None else None
        if left is not None:
            from fastpose.screens.format import fmt_duration

            items["run left"] = fmt_duration(left)
        return items

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._stop_progress()  # the finished bar stays on screen; the next epoch starts a new one

    def _get_train_description(self, current_epoch: int) -> str:
        """``Epoch 2/2`` for the last of two epochs: counted from 1, as every screen counts them (Lightning's
        own bar says ``Epoch 1/1``)."""
        text = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            text += f"/{self.trainer.max_epochs}"
        return f"{text:{len(self.validation_description)}}"  # as wide as "Validation": no flicker


class ConsoleReport(pl.Callback):
    """The model at fit start and one line per epoch (see the module docstring). Must come after the
    ``ProgressBar`` in the trainer's callbacks, so the epoch's bar is closed before its line is printed."""

    def __init__(self, config: RunConfig) -> None:
        from fastpose.metrics import direction

        self.config = config
        self.monitor = config.train.monitor
        self._direction = direction(self.monitor)
        self.best: tuple[float, int] | None = None  # (value, epoch)
        self.clock = RunClock()

    def _print(self, text: Any) -> None:
        import sys

        from fastpose.screens.terminal.console import safe_console

        sys.stdout.flush()  # the progress bar's last frame (stdout) before this line (stderr)
        safe_console(stderr=True).print(text, soft_wrap=True)
        sys.stderr.flush()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            from fastpose.screens.terminal.epoch import model_summary

            self._print(model_summary(summarize_model(getattr(pl_module, "model", pl_module), self.config)))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A resumed run starts from the best its checkpoint callback restored (``best-epochNNN.ckpt``)."""
        import re

        self.clock.train_start(trainer)

        for callback in trainer.checkpoint_callbacks:
            score = getattr(callback, "best_model_score", None)
            found = re.search(r"best-epoch(\d+)", str(getattr(callback, "best_model_path", "")))
            if getattr(callback, "monitor", None) == self.monitor and score is not None and found:
                self.best = (float(score), int(found.group(1)))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.clock.epoch_start()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds, left = self.clock.epoch_end(trainer)
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        values = {name: _float(v) for name, v in trainer.callback_metrics.items()}
        value = values.get(self.monitor)
        if value is not None and math.isfinite(value):
            better = self.best is None or (value < self.best[0] if self._direction == "min" else value > self.best[0])
            if better:
                self.best = (value, trainer.current_epoch)
        from fastpose.screens.epoch import EpochLine
        from fastpose.screens.terminal.epoch import epoch_line

        self._print(epoch_line(EpochLine(trainer.current_epoch, trainer.max_epochs, self.monitor, values, self.best,
                                         seconds, left)))


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def summarize_model(model: Any, config: RunConfig) -> Any:
    """The network in numbers (``fastpose.screens.epoch.ModelSummary``): parameters by part (encoder, decoder,
    heads), how deep the encoder is built, its weights."""
    from fastpose.screens.epoch import ModelSummary

    parts = {"encoder": 0, "decoder": 0, "heads": 0}
    trainable = 0
    for name, p in model.named_parameters():
        top = name.split(".", 1)[0]
        part = "encoder" if top == "encoder" else "heads" if top.endswith("_head") else "decoder"
        parts[part] += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    m = config.model
    stride = {3: "to stride 16 (layer4 not built)", 4: "to stride 32"}.get(getattr(model, "levels", None), "")
    return ModelSummary(type(model).__name__, m.backbone, stride, m.weights or "scratch", m.decoder_channels,
                        getattr(m, "rotation", None), parts, trainable)
