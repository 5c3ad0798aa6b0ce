"""Rotation metrics: the error in degrees, and torchmetrics ``Metric``s that are exact across batches and ranks.

Superseded for logging by ``fastpose.pose.evaluation`` (NOCS-standard: detections ranked by score, false
positives counted). ``RotationAccuracy`` and ``DegreeErrorMeanAP`` below see only ground-truth objects, so a
model's spurious detections never lower them: they are kept for the benchmarks that import them, not logged.

``rotation_error_deg`` is the geodesic angle ``2 * acos(|<q_hat, q>|)`` computed stably as
``2 * atan2(|v|, |w|)`` of the relative quaternion, in [0, 180]. For the y-symmetric categories (bottle,
bowl, can) it is the angle between the two rotated y axes, as the NOCS evaluation does (Wang et al. 2019).

The metrics keep sums and concatenations only (``dist_reduce_fx`` "sum" / "cat"), so their values over
several batches, or several DDP ranks, equal those over the concatenated data (never ``(old + new) / 2``).
Both take the dict of ``fastpose.pose.aggregate.evaluate_batch``: one row per ground-truth instance.

``RotationAccuracy`` averages over matched instances (a missed object has no predicted rotation; the miss
rate is reported by ``DegreeErrorMeanAP``). With nothing matched yet, mean and median are NaN.

``DegreeErrorMeanAP`` follows NOCS's degree AP: per class, the matched predictions are ranked by
confidence, a prediction is a true positive when its error is below the threshold, recall is relative to
all ground-truth instances of the class (so misses lower it), and AP is the area under the precision-recall
curve with precision made monotone (all-point interpolation, as VOC 2010+). ``degree_mAP_<t>`` averages
the classes that have ground truth; ``miss_rate`` is the fraction of ground-truth instances unmatched.
"""

from __future__ import annotations

import math

import roma
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from fastpose.pose.data.synthetic import CLASSES, SYMMETRIC_CLASSES
from fastpose.pose.rotations import quat_angle, safe_normalize, vector_angle

MUG = CLASSES.index("mug") + 1


def rotation_error_deg(pred: Tensor, gt: Tensor, class_id: Tensor | None = None,
                       handle_visible: Tensor | None = None) -> Tensor:
    """Rotation error in degrees (N,) in [0, 180] between (N, 4) scalar-last quaternions.

    ``pred`` is normalised (it may be raw network output); ``q`` and ``-q`` give the same error. A ``pred``
    row of (near) zero norm (< 1e-6) has no rotation: its error is NaN (a miss, never 0 degrees). If
    ``class_id`` (N,) is given, rows of the symmetric classes (bottle 1, bowl 2, can 4) use the y-axis angle,
    and so do mugs (6) whose ``handle_visible`` (N,) bool is False (NOCS's rule; no flag = visible).
    """
    norm = torch.linalg.vector_norm(pred.detach(), dim=-1)
    pred, gt = safe_normalize(pred), safe_normalize(gt)
    err = quat_angle(pred, gt)
    if class_id is not None and err.numel():
        sym = y_symmetric(class_id, handle_visible)
        if bool(sym.any()):
            ey = torch.zeros(3, dtype=pred.dtype, device=pred.device)
            ey[1] = 1
            y_err = vector_angle(roma.quat_action(pred, ey.expand_as(pred[..., :3]), is_normalized=True),
                                 roma.quat_action(gt, ey.expand_as(gt[..., :3]), is_normalized=True))
            err = torch.where(sym, y_err, err)
    return torch.rad2deg(err).masked_fill(norm < 1e-6, math.nan)


def y_symmetric(class_id: Tensor, handle_visible: Tensor | None = None) -> Tensor:
    """(N,) bool: the object's pose is defined up to a rotation about its y axis (bottle, bowl, can, and a
    mug whose handle is not visible when ``handle_visible`` (N,) bool is given)."""
    sym = torch.zeros_like(class_id, dtype=torch.bool)
    for c in SYMMETRIC_CLASSES:
        sym |= class_id == c
    if handle_visible is not None:
        sym |= (class_id == MUG) & ~handle_visible.bool()
    return sym


class RotationAccuracy(Metric):
    """Mean and median rotation error (degrees) over matched instances: ``{"rot_err_mean", "rot_err_median"}``."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("errors", default=[], dist_reduce_fx="cat")
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, ev: dict[str, Tensor]) -> None:
        m = ev["matched"]
        err = rotation_error_deg(ev["pred_quat"][m].float(), ev["gt_quat"][m].float(), ev["class_id"][m])
        self.errors.append(err)
        self.total += err.double().sum()
        self.count += err.numel()

    def compute(self) -> dict[str, Tensor]:
        errors = dim_zero_cat(self.errors) if len(self.errors) else torch.zeros(0)
        nan = torch.tensor(math.nan)
        mean = (self.total / self.count).float() if self.count > 0 else nan
        median = torch.quantile(errors.float(), 0.5) if errors.numel() else nan
        return {"rot_err_mean": mean, "rot_err_median": median}


def average_precision(correct: Tensor, score: Tensor, num_gt: int) -> Tensor:
    """All-point interpolated AP of detections ``correct`` (K,) bool ranked by ``score`` (K,), ``num_gt`` total."""
    if num_gt == 0:
        return torch.tensor(math.nan)
    if correct.numel() == 0:
        return torch.tensor(0.0)
    order = torch.sort(score, descending=True, stable=True).indices
    tp = correct[order].double()
    cum = torch.cumsum(tp, 0)
    precision = cum / torch.arange(1, tp.numel() + 1, dtype=torch.float64)
    precision = torch.flip(torch.cummax(torch.flip(precision, [0]), 0).values, [0])  # monotone envelope
    return ((tp * precision).sum() / num_gt).float()


class DegreeErrorMeanAP(Metric):
    """NOCS-style degree AP per class and averaged, and the miss rate (see the module docstring).

    ``compute()`` -> ``{"degree_mAP_5", "degree_mAP_10", "degree_mAP_20", "miss_rate",
    "degree_AP_5_bottle", ...}`` (per class: NaN for a class without ground truth).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, thresholds: tuple[float, ...] = (5, 10, 20), num_classes: int = 6, **kwargs) -> None:
        super().__init__(**kwargs)
        self.thresholds, self.num_classes = tuple(thresholds), num_classes
        self.add_state("errors", default=[], dist_reduce_fx="cat")
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("classes", default=[], dist_reduce_fx="cat")
        self.add_state("matched", default=[], dist_reduce_fx="cat")

    def update(self, ev: dict[str, Tensor]) -> None:
        err = rotation_error_deg(ev["pred_quat"].float(), ev["gt_quat"].float(), ev["class_id"])
        m = ev["matched"].bool()
        self.errors.append(torch.where(m, err, torch.full_like(err, 180.0)))
        self.scores.append(ev["score"].float())
        self.classes.append(ev["class_id"].long())
        self.matched.append(m)

    def compute(self) -> dict[str, Tensor]:
        if not len(self.errors):
            err = score = torch.zeros(0)
            cls, matched = torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool)
        else:
            err, score = dim_zero_cat(self.errors).cpu(), dim_zero_cat(self.scores).cpu()
            cls, matched = dim_zero_cat(self.classes).cpu(), dim_zero_cat(self.matched).cpu().bool()
        names = CLASSES if self.num_classes == len(CLASSES) else tuple(str(c) for c in range(1, self.num_classes + 1))
        result: dict[str, Tensor] = {}
        for t in self.thresholds:
            tag = f"{t:g}"
            per_class = []
            for c in range(1, self.num_classes + 1):
                of_c = cls == c
                sel = of_c & matched
                ap = average_precision(err[sel] < t, score[sel], int(of_c.sum()))
                result[f"degree_AP_{tag}_{names[c - 1]}"] = ap
                per_class.append(ap)
            aps = torch.stack(per_class)
            present = ~torch.isnan(aps)
            result[f"degree_mAP_{tag}"] = aps[present].mean() if bool(present.any()) else torch.tensor(0.0)
        n = matched.numel()
        result["miss_rate"] = torch.tensor(1.0 - matched.float().mean().item() if n else 0.0)
        return result
