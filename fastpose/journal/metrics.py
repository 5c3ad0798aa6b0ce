"""Metric names and their direction (is lower or higher better?), in one place.

``DIRECTIONS`` names the metrics fastpose logs; any other name falls back to a rule on its spelling:
``loss``/``err``/``miss`` are minimised, ``mAP``/``acc`` maximised, anything else minimised.
"""

from __future__ import annotations

DIRECTIONS: dict[str, str] = {
    "train/loss": "min",
    "train/loss_mask": "min",
    "train/loss_rot": "min",
    "val/loss": "min",
    "val/rot_err_mean": "min",
    "val/rot_err_median": "min",
    "val/degree_mAP_5": "max",
    "val/degree_mAP_10": "max",
    "val/degree_mAP_20": "max",
    "val/miss_rate": "min",
}

# What the daily log shows for each run, in this order, when the run logged it.
HEADLINE: tuple[str, ...] = ("val/rot_err_mean", "val/degree_mAP_10", "val/loss", "train/loss")


def direction(name: str) -> str:
    """``"min"`` or ``"max"``: how ``name`` improves."""
    if name in DIRECTIONS:
        return DIRECTIONS[name]
    low = name.lower()
    if any(word in low for word in ("loss", "err", "miss")):
        return "min"
    if "map" in low or "acc" in low:
        return "max"
    return "min"


def is_better(name: str, candidate: float | None, incumbent: float | None) -> bool:
    """Does ``candidate`` beat ``incumbent`` for metric ``name``? NaN (or None, as stored) never wins."""
    if candidate is None or candidate != candidate:
        return False
    if incumbent is None or incumbent != incumbent:
        return True
    return candidate < incumbent if direction(name) == "min" else candidate > incumbent


def primary_metric(config: dict | None = None) -> str:
    """The metric a study is judged on (sweep table, group verdict): one helper, so that a configurable
    ``train.monitor`` (issue 12) changes it in one place. Today: the validation median rotation error."""
    monitor = ((config or {}).get("train") or {}).get("monitor") if isinstance(config, dict) else None
    return monitor if isinstance(monitor, str) and monitor else "val/rot_err_median"


# Config keys that change what each logged loss value means (the terms are logged unweighted; the total is
# mask_weight * loss_mask + rot_weight * loss_rot). A loss logged under other values is another quantity.
LOSS_DEFINITION_KEYS = {
    "loss_mask": (),  # the same cross-entropy for every rotation loss
    "loss_rot": ("loss.name", "loss.eps"),
    "loss": ("loss.name", "loss.eps", "loss.mask_weight", "loss.rot_weight"),
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
