"""What a training run shows while it runs, as data: the model in numbers (``ModelSummary``) and one line per
epoch (``EpochLine``: the primary metric first with its best so far, then the errors, rates and losses, then
how long the epoch took and how long the whole run has left)."""

from __future__ import annotations

from dataclasses import dataclass


# After the primary metric, in this order, when logged (names as the journal and TensorBoard have them).
EPOCH_LINE = ("val/rot_err_median", "val/trans_err_median_cm", "val/miss_rate", "val/false_positive_rate",
              "val/loss", "train/loss")


@dataclass
class EpochLine:
    epoch: int  # 0-based, as Lightning counts (the faces show it from 1)
    max_epochs: int | None
    monitor: str  # the primary metric (train.monitor)
    values: dict[str, float | None]  # what the trainer logged this epoch
    best: tuple[float, int] | None  # (value, 0-based epoch) of the primary metric's best so far
    seconds: float | None = None  # this epoch's wall time, its validation included
    remaining_s: float | None = None  # the whole run's time left: the mean epoch so far x the epochs left

    def shown(self) -> list[tuple[str, float | None]]:
        """The metrics after the primary one, in ``EPOCH_LINE`` order, those that were logged."""
        return [(n, self.values[n]) for n in EPOCH_LINE if n != self.monitor and n in self.values]


@dataclass
class ModelSummary:
    network: str  # the class name
    backbone: str
    stride: str  # "to stride 16 (layer4 not built)" | "to stride 32" | ""
    weights: str  # a file, or "scratch"
    decoder_channels: int
    rotation: str | None
    parts: dict[str, int]  # parameters per part: encoder, decoder, heads
    trainable: int

    @property
    def total(self) -> int:
        return sum(self.parts.values())
