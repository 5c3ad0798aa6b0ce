"""Metric names and their direction (is lower or higher better?), and the categories they are computed
per, in one place. Torch-free: the journal, the screens and the science all read it.

``DIRECTIONS`` names the metrics fastpose logs; any other name falls back to a rule on its spelling:
``loss``/``err``/``miss``/``false_positive`` are minimised; ``mAP``/``acc``/``iou_N``/``Ndeg`` (the
NOCS-standard APs, per class too: ``val/10deg_5cm/mug``) maximised; anything else minimised.

``DEFAULT_MONITOR`` is the primary metric (``train.monitor``'s default): it picks the best checkpoint, leads
the journal's line of each run and the ``compare`` table. ``metric_order`` is the one reading order of
metrics every screen uses. It is an AP that counts misses and false positives, so a
model that finds nothing scores 0 and is never best (README, "Which checkpoint is best").
"""

from __future__ import annotations

import re
from typing import Iterable

# The NOCS categories, class ids 1..6 in this order (0 is the background); per-class metrics end in
# "/<name>" (``val/10deg_5cm/mug``).
CLASSES = ("bottle", "bowl", "camera", "can", "laptop", "mug")

DIRECTIONS: dict[str, str] = {
    "train/loss": "min",
    "train/loss_mask": "min",
    "train/loss_rot": "min",
    "train/loss_trans": "min",
    "train/loss_size": "min",
    "val/loss": "min",
    # NOCS-standard mean APs (fastpose.pose.evaluation): detections ranked by score, false positives counted
    "val/iou_25": "max",
    "val/iou_50": "max",
    "val/iou_75": "max",
    "val/5deg_2cm": "max",
    "val/5deg_5cm": "max",
    "val/10deg_2cm": "max",
    "val/10deg_5cm": "max",
    "val/10deg_10cm": "max",
    "val/5deg": "max",
    "val/10deg": "max",
    "val/20deg": "max",
    "val/rot_err_median": "min",
    "val/trans_err_median_cm": "min",
    "val/miss_rate": "min",
    "val/false_positive_rate": "min",
    # logged by older runs (ground-truth-only rotation metrics); kept so old journals read right
    "val/rot_err_mean": "min",
    "val/degree_mAP_5": "max",
    "val/degree_mAP_10": "max",
    "val/degree_mAP_20": "max",
}

# Logged by older runs; kept in DIRECTIONS so old journals read right, never logged today.
LEGACY: tuple[str, ...] = ("val/rot_err_mean", "val/degree_mAP_5", "val/degree_mAP_10", "val/degree_mAP_20")
# What every run logs today (per-class APs aside), e.g. the metric columns of TensorBoard's HParams table.
LOGGED: tuple[str, ...] = tuple(name for name in DIRECTIONS if name not in LEGACY)

DEFAULT_MONITOR = "val/10deg"

# Groups of the metric order (``metric_order``): what a researcher reads first comes first.
_GROUPS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((label, re.compile(pattern)) for label, pattern in (
    ("rotation AP", r"^val/\d+deg$"),  # detection-aware, rotation only (the default primary)
    ("pose AP", r"^val/\d+deg_\d+cm$"),  # n° m cm
    ("3D IoU AP", r"^val/iou_\d+$"),
    ("errors and rates", r"^val/[^/]*(err|rate)[^/]*$"),
    ("validation loss", r"^val/loss[^/]*$"),
    ("training loss", r"^train/loss[^/]*$"),
    ("per class", r"^val/[^/]+/[^/]+$"),
))


def natural_key(name: str) -> tuple:
    """Sort key that reads numbers as numbers: ``5deg`` < ``10deg`` < ``20deg``, ``mAP_5`` < ``mAP_10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def metric_group(name: str) -> str:
    """The group a metric is listed under (``metric_order``); ``other`` for names no rule knows."""
    if name in _OLDER:
        return "older metrics"
    return next((label for label, pattern in _GROUPS if pattern.match(name)), "other")


_OLDER = ("val/rot_err_mean", "val/degree_mAP_5", "val/degree_mAP_10", "val/degree_mAP_20")
# The validation metrics today's training logs (fastpose.pose.evaluation), defined or not.
STANDARD_VAL = tuple(n for n in DIRECTIONS if n.startswith("val/") and n not in _OLDER)
# within "errors and rates": the pose errors, then what they are computed over
_FIRST = ("val/rot_err_median", "val/trans_err_median_cm", "val/miss_rate", "val/false_positive_rate")


def metric_order(names: Iterable[str], primary: str | None = None) -> list[str]:
    """``names`` in reading order: the primary metric first, then by group (rotation APs, pose APs, 3D IoU
    APs, errors and rates, validation loss, training loss, older metrics, per class, other), numbers sorted
    as numbers within a group (``5deg`` before ``10deg``), per-class ones by metric then class."""
    groups = [label for label, _ in _GROUPS[:-1]] + ["older metrics", "per class", "other"]

    def key(name: str) -> tuple:
        base = name.rsplit("/", 1)[0] if metric_group(name) == "per class" else name
        rank = _FIRST.index(name) if name in _FIRST else len(_FIRST)
        return (name != primary, groups.index(metric_group(name)), rank, natural_key(base), natural_key(name))

    return sorted(set(names), key=key)


def run_primary(config: dict | None, logged: Iterable[str] = ()) -> str:
    """A run's primary metric: its ``train.monitor``; for a run journaled without one (older runs, direct
    inserts), the first metric that once played that part it logged, else ``DEFAULT_MONITOR``."""
    train = (config or {}).get("train") if isinstance(config, dict) else None
    monitor = train.get("monitor") if isinstance(train, dict) else None
    if isinstance(monitor, str) and monitor:
        return monitor
    logged = set(logged)
    return next((m for m in _PRIMARY_BEFORE_MONITOR if m in logged), DEFAULT_MONITOR)


# What picked the best checkpoint before ``train.monitor`` existed, newest first.
_PRIMARY_BEFORE_MONITOR = (DEFAULT_MONITOR, "val/rot_err_median", "val/rot_err_mean")


_AP_NAME = re.compile(r"(^|/)(iou_\d+|\d+deg(_\d+cm)?)(/|$)")


def direction(name: str) -> str:
    """``"min"`` or ``"max"``: how ``name`` improves."""
    if name in DIRECTIONS:
        return DIRECTIONS[name]
    low = name.lower()
    if any(word in low for word in ("loss", "err", "miss", "false_positive")):
        return "min"
    if "map" in low or "acc" in low or _AP_NAME.search(low):
        return "max"
    return "min"


def direction_known(name: str) -> bool:
    """Is ``direction(name)`` known (listed, per class of a listed metric, or named by the rules above) rather
    than the fallback for a name no rule knows? Tables mark a best value only where it is."""
    base = name.rsplit("/", 1)[0] if name.count("/") > 1 else name
    if name in DIRECTIONS or base in DIRECTIONS:
        return True
    low = name.lower()
    return (any(word in low for word in ("loss", "err", "miss", "false_positive", "map", "acc"))
            or bool(_AP_NAME.search(low)))


def is_better(name: str, candidate: float | None, incumbent: float | None) -> bool:
    """Does ``candidate`` beat ``incumbent`` for metric ``name``? NaN (or None, as stored) never wins."""
    if candidate is None or candidate != candidate:
        return False
    if incumbent is None or incumbent != incumbent:
        return True
    return candidate < incumbent if direction(name) == "min" else candidate > incumbent


def primary_metric(config: dict | None = None) -> str:
    """The metric a study is judged on (sweep table, group verdict): one helper, so that a configurable
    ``train.monitor`` changes it in one place. Today: the validation median rotation error."""
    monitor = ((config or {}).get("train") or {}).get("monitor") if isinstance(config, dict) else None
    return monitor if isinstance(monitor, str) and monitor else "val/rot_err_median"


# Config keys that change what each logged loss value means (the terms are logged unweighted; the total is
# mask_weight * loss_mask + rot_weight * loss_rot + trans_weight * loss_trans + size_weight * loss_size). A loss
# logged under other values is another quantity. loss_trans weighs its log-depth term 20x since the depth branch
# (model.depth_head; runs before it have no such key): the key separates the two definitions.
LOSS_DEFINITION_KEYS = {
    "loss_mask": (),  # the same cross-entropy for every rotation loss
    "loss_trans": ("model.depth_head",),  # the same L1 terms for every rotation loss
    "loss_size": (),
    "loss_rot": ("loss.name", "loss.eps"),
    "loss": ("loss.name", "loss.eps", "loss.mask_weight", "loss.rot_weight", "loss.trans_weight", "loss.size_weight",
             "model.depth_head"),
}


def comparable_across(name: str, flat_configs: list[dict]) -> bool:
    """Can values of metric ``name`` from runs with these (flattened) configs be ranked against each other?

    Errors, APs and rates are measured the same way for every run; a loss (``*/loss*``) only when every run
    defines it the same way (``LOSS_DEFINITION_KEYS``; an unknown loss term needs the whole [loss] table equal).
    """
    short = name.split("/")[-1]
    if "loss" not in short:
        return True
    keys = LOSS_DEFINITION_KEYS.get(short, LOSS_DEFINITION_KEYS["loss"])
    return all(len({repr(c.get(k)) for c in flat_configs}) <= 1 for k in keys)
