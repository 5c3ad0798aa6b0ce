"""What a training run prints while it runs: the model in two lines, the progress bar, one line per epoch.

- ``ConsoleReport`` (global rank zero): at fit start, the model (``FastPoseNet``, encoder, what was left
  out, parameters by part); after each epoch's validation, one line with the primary metric
  (``train.monitor``) first with its best so far, then the validation errors and rates, ``val/loss`` and
  ``train/loss`` (the epoch's means). Printed on stderr through ``fastpose.text.safe_console`` (config
  values are user text), with or without the progress bar, so a sweep cell's log has them too.
- ``ProgressBar``: Lightning's rich bar without ``v_num`` (the logger's version, which for our
  ``tensorboard`` directory read ``oard``); each epoch's bar is closed when the epoch ends, so the epoch's
  line prints under it instead of being drawn through the live display.

Lightning's own model summary is off (``enable_model_summary=False``): its FLOPs and mode columns were
zeros and noise, and it listed the metric object as a layer.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar

from fastpose.config import RunConfig

# After the primary metric, in this order, when logged (names as the journal and TensorBoard have them).
EPOCH_LINE = ("val/rot_err_median", "val/trans_err_median_cm", "val/miss_rate", "val/false_positive_rate",
              "val/loss", "train/loss")


class ProgressBar(RichProgressBar):
    """``RichProgressBar(leave=True)`` without ``v_num``, each epoch's bar closed at the epoch's end."""

    def __init__(self) -> None:
        super().__init__(leave=True)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._stop_progress()  # the finished bar stays on screen; the next epoch starts a new one


class ConsoleReport(pl.Callback):
    """The model at fit start and one line per epoch (see the module docstring). Must come after the
    ``ProgressBar`` in the trainer's callbacks, so the epoch's bar is closed before its line is printed."""

    def __init__(self, config: RunConfig) -> None:
        from fastpose.journal.metrics import direction

        self.config = config
        self.monitor = config.train.monitor
        self._direction = direction(self.monitor)
        self.best: tuple[float, int] | None = None  # (value, epoch)

    def _print(self, text: Any) -> None:
        import sys

        from fastpose.text import safe_console

        sys.stdout.flush()  # the progress bar's last frame (stdout) before this line (stderr)
        safe_console(stderr=True).print(text, soft_wrap=True)
        sys.stderr.flush()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._print(model_summary(getattr(pl_module, "model", pl_module), self.config))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A resumed run starts from the best its checkpoint callback restored (``best-epochNNN.ckpt``)."""
        import re

        for callback in trainer.checkpoint_callbacks:
            score = getattr(callback, "best_model_score", None)
            found = re.search(r"best-epoch(\d+)", str(getattr(callback, "best_model_path", "")))
            if getattr(callback, "monitor", None) == self.monitor and score is not None and found:
                self.best = (float(score), int(found.group(1)))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        values = {name: _float(v) for name, v in trainer.callback_metrics.items()}
        value = values.get(self.monitor)
        if value is not None and math.isfinite(value):
            better = self.best is None or (value < self.best[0] if self._direction == "min" else value > self.best[0])
            if better:
                self.best = (value, trainer.current_epoch)
        self._print(epoch_line(trainer.current_epoch, trainer.max_epochs, self.monitor, values, self.best))


def epoch_line(epoch: int, max_epochs: int | None, monitor: str, values: dict[str, float | None],
               best: tuple[float, int] | None):  # noqa: ANN201 - rich Text
    """``epoch 3/19  val/10deg 0.147 (best 0.150, epoch 2)  val/rot_err_median 11.4  ...`` as rich Text
    (epochs 0-based of the last index, as the progress bar and the journal count them)."""
    from fastpose.text import lit

    line = lit(f"epoch {epoch}/{max(0, (max_epochs or 1) - 1)}", "bold")
    line.append("  ")
    line.append_text(lit(f"{monitor} {_fmt(values.get(monitor))}", "bold cyan"))
    if best is not None:
        line.append(f" (best {_fmt(best[0])}, epoch {best[1]})", style="cyan")
    for name in EPOCH_LINE:
        if name != monitor and name in values:
            line.append("  ")
            line.append_text(lit(f"{name} {_fmt(values[name])}"))
    return line


def model_summary(model: Any, config: RunConfig) -> str:
    """Two lines: what the network is, and its parameters by part (encoder, decoder, heads)."""
    parts = {"encoder": 0, "decoder": 0, "heads": 0}
    trainable = 0
    for name, p in model.named_parameters():
        top = name.split(".", 1)[0]
        part = "encoder" if top == "encoder" else "heads" if top.endswith("_head") else "decoder"
        parts[part] += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    total = sum(parts.values())
    m = config.model
    levels = getattr(model, "levels", None)
    stride = {3: "to stride 16 (layer4 not built)", 4: "to stride 32"}.get(levels, "")
    weights = m.weights or "scratch"
    head = f"model {type(model).__name__}: {m.backbone} encoder {stride} from {weights}, decoder width {m.decoder_channels}"
    if getattr(m, "rotation", None):
        head += f", {m.rotation} rotation head"
    size = " + ".join(f"{k} {_count(v)}" for k, v in parts.items())
    frozen = "" if trainable == total else f", {_count(total - trainable)} frozen"
    return f"{head}\n  {_count(total)} parameters ({size}{frozen}; {total * 4 / 2**20:.1f} MB as float32)"


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None
