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
