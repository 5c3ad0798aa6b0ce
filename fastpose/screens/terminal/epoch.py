"""The run's lines on the terminal while it trains: the model in two lines, one line per epoch."""

from __future__ import annotations

import math

from fastpose.screens.epoch import EpochLine, ModelSummary
from fastpose.screens.terminal.console import lit


def epoch_line(line: EpochLine):  # noqa: ANN201 - rich Text
    """``epoch 4/20  val/10deg 0.147 (best 0.150, epoch 3)  val/rot_err_median 11.4  ...  (12s; run ~3m12s to
    go)`` as rich Text; epochs counted from 1 (``epoch 20/20`` is the last)."""
    total = f"/{line.max_epochs}" if line.max_epochs and line.max_epochs > 0 else ""
    text = lit(f"epoch {line.epoch + 1}{total}", "bold")
    text.append("  ")
    text.append_text(lit(f"{line.monitor} {_fmt(line.values.get(line.monitor))}", "bold cyan"))
    if line.best is not None:
        text.append(f" (best {_fmt(line.best[0])}, epoch {line.best[1] + 1})", style="cyan")
    for name, value in line.shown():
        text.append("  ")
        text.append_text(lit(f"{name} {_fmt(value)}"))
    if line.seconds is not None:
        from fastpose.screens.format import fmt_duration

        left = "" if not line.remaining_s else f"; run ~{fmt_duration(line.remaining_s)} to go"
        text.append(f"  ({fmt_duration(line.seconds)}{left})", style="dim")
    return text


def model_summary(s: ModelSummary) -> str:
    """Two lines: what the network is, and its parameters by part (encoder, decoder, heads)."""
    head = f"model {s.network}: {s.backbone} encoder {s.stride} from {s.weights}, decoder width {s.decoder_channels}"
    if s.rotation:
        head += f", {s.rotation} rotation head"
    size = " + ".join(f"{k} {_count(v)}" for k, v in s.parts.items())
    frozen = "" if s.trainable == s.total else f", {_count(s.total - s.trainable)} frozen"
    return f"{head}\n  {_count(s.total)} parameters ({size}{frozen}; {s.total * 4 / 2**20:.1f} MB as float32)"


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
