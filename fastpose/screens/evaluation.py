"""The NOCS-format evaluation table (``fastpose eval``, and each evaluation in ``journal show``): one row per
class that has ground truth in the split, then the mean; APs as fractions (faces show percent); the rates and
median errors with what each is computed over."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fastpose.metrics import CLASSES


TABLE_COLUMNS = (("iou_25", "IoU25"), ("iou_50", "IoU50"), ("iou_75", "IoU75"), ("5deg_2cm", "5°2cm"),
                 ("5deg_5cm", "5°5cm"), ("10deg_2cm", "10°2cm"), ("10deg_5cm", "10°5cm"), ("10deg_10cm", "10°10cm"))


ROTATION_ONLY = (("5deg", "5°"), ("10deg", "10°"), ("20deg", "20°"))  # the columns without 3D metrics


SHOWN = ("iou_50", "iou_75", "5deg_2cm", "5deg_5cm", "10deg_2cm", "10deg_5cm", "miss_rate", "false_positive_rate")


@dataclass
class EvaluationTable:
    title: str
    columns: list[tuple[str, str]]  # (metric key, heading)
    rows: list[tuple[str, list[float]]]  # (class or "mean", one value per column; NaN: undefined)
    rotation_only: list[float]  # AP at 5, 10, 20 degrees, rotation alone
    lines: list[tuple[str, float]] = field(default_factory=list)  # (what, over what), value


def evaluation_table(values: dict[str, float], title: str) -> EvaluationTable:
    """The table of one evaluation's ``values`` (``fastpose.pose.evaluation`` names: ``iou_50``,
    ``10deg_5cm/mug``, ``miss_rate``...)."""
    columns = [(k, h) for k, h in TABLE_COLUMNS if k in values] or list(ROTATION_ONLY)
    rows = []
    for name in CLASSES + ("mean",):
        cells = [values.get(k if name == "mean" else f"{k}/{name}", math.nan) for k, _ in columns]
        if name != "mean" and all(v != v for v in cells):
            continue  # a class without ground truth in this split
        rows.append((name, cells))
    lines = [("miss rate (of all ground truth)", values.get("miss_rate", math.nan)),
             ("false-positive rate (of all detections)", values.get("false_positive_rate", math.nan)),
             ("median rotation error, matched pairs (deg)", values.get("rot_err_median", math.nan)),
             ("median translation error, matched pairs (cm)", values.get("trans_err_median_cm", math.nan))]
    return EvaluationTable(title, columns, rows, [values.get(k, math.nan) for k, _ in ROTATION_ONLY], lines)
