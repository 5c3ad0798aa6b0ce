"""NOCS-standard evaluation: detections ranked by score, false positives and duplicates counted, AP per class.

Follows the evaluation code of the NOCS authors (Wang et al. 2019, ``utils.py``: ``compute_3d_iou_new``,
``compute_combination_RT_degree_cm_symmetry``, ``compute_3d_matches``, ``compute_RT_matches``,
``compute_ap_from_matches_scores``); the departures are listed in ``docs/ARCHITECTURE.md`` and below.

Criteria. Every predicted instance (a *detection*: image, class, score, rotation, translation, size and its
2D mask) is tested against the ground-truth instances of its own image and class under each criterion:

==================  =============================================================================================
``iou_25/50/75``    3D IoU of the two boxes >= 0.25 / 0.5 / 0.75
``Ndeg_Mcm``        rotation error <= N degrees and translation error <= M cm (5/2, 5/5, 10/2, 10/5, 10/10)
``Ndeg``            rotation only: rotation error <= N degrees (5, 10, 20) and 2D mask IoU >= 0.5
``det``             2D mask IoU >= 0.5 (the detection itself; gives the miss and false-positive rates)
==================  =============================================================================================

Matching (per criterion, per image, as NOCS): detections in decreasing score order each take the best
still-unmatched ground truth of their class that meets the criterion: the highest IoU for the IoU criteria
(NOCS sorts by IoU), the smallest ``degrees + cm`` for the pose criteria (NOCS sorts by their sum), the
smallest rotation error for the rotation-only ones. A detection left without a ground truth is a false
positive, so a duplicate (a second detection of an already matched object) is one.

3D IoU (``box_iou_3d``): NOCS's definition, the IoU of the camera-frame axis-aligned boxes that bound the
eight corners of each posed box; for bottle, bowl, can (and a mug whose handle is not visible) the predicted
box is turned about its y axis in 20 steps of 18 degrees and the best IoU is kept. NOCS's code takes the
bounds along the wrong array axis (``np.amax(bbox, axis=0)`` on a (3, 8) array, see
https://github.com/hughw19/NOCS_CVPR2019/issues/47); here the bounds are per coordinate, as the code means.

Rotation error: ``fastpose.pose.metrics.rotation_error_deg`` (geodesic angle; y-axis angle for the
symmetric classes and for a mug whose handle is not visible; NaN, which meets no threshold, for a zero
predicted quaternion). Translation error: Euclidean distance of the box centres in centimetres.

AP (``average_precision``): per class over every image, detections ranked by score; precision and recall at
each *distinct* score (tied detections enter together, so the result does not depend on their order;
NOCS's ``argsort`` breaks ties by position), recall relative to *all* ground-truth instances of the class,
precision made monotone (its running maximum from the right), and the area under the step curve
(``compute_ap_from_matches_scores``). The mean AP averages the classes that have ground truth.

The ``PoseEvaluation`` metric matches in ``update`` (images are independent, so any batching gives the
same matches) and keeps per-detection rows and per-class counts (``cat``/``sum`` states): over several
batches or DDP ranks its result equals that over the concatenated data.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from fastpose.pose.data.synthetic import CLASSES
from fastpose.pose.metrics import rotation_error_deg, y_symmetric
from fastpose.pose.rotations import quat_to_rotmat

IOU_THRESHOLDS = (0.25, 0.5, 0.75)
POSE_THRESHOLDS = ((5, 2), (5, 5), (10, 2), (10, 5), (10, 10))  # (degrees, centimetres)
ROT_THRESHOLDS = (5, 10, 20)  # degrees, with 2D mask IoU >= DETECTION_IOU
DETECTION_IOU = 0.5
SYMMETRY_STEPS = 20  # NOCS: the predicted box of a y-symmetric object is turned about y in 20 steps

IOU_NAMES = tuple(f"iou_{round(t * 100)}" for t in IOU_THRESHOLDS)
POSE_NAMES = tuple(f"{d}deg_{c}cm" for d, c in POSE_THRESHOLDS)
ROT_NAMES = tuple(f"{d}deg" for d in ROT_THRESHOLDS)
CRITERIA = IOU_NAMES + POSE_NAMES + ROT_NAMES + ("det",)  # columns of the per-detection ``tp`` table
SUMMARY_NAMES = ("rot_err_median", "trans_err_median_cm", "miss_rate", "false_positive_rate")

_CORNER_SIGNS = torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
                             dtype=torch.float64) / 2


def box_corners(rot: Tensor, trans: Tensor, size: Tensor) -> Tensor:
    """Corners (N, 8, 3) of boxes with extents ``size`` (N, 3) centred on the object origin, posed by the
    object-to-camera ``rot`` (N, 3, 3) and ``trans`` (N, 3): ``trans + rot @ (signs * size / 2)``."""
    local = _CORNER_SIGNS.to(size) * size[:, None, :]  # (N, 8, 3)
    return trans[:, None, :] + local @ rot.transpose(1, 2)


def _aligned_iou(c1: Tensor, h1: Tensor, c2: Tensor, h2: Tensor) -> Tensor:
    """IoU (...,) of axis-aligned boxes given by centres and half-extents (..., 3)."""
    inter = (torch.minimum(c1 + h1, c2 + h2) - torch.maximum(c1 - h1, c2 - h2)).clamp_min(0).prod(-1)
    union = 8 * (h1.prod(-1) + h2.prod(-1)) - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-30), torch.zeros_like(inter))


def box_iou_3d(pred_rot: Tensor, pred_trans: Tensor, pred_size: Tensor, gt_rot: Tensor, gt_trans: Tensor,
               gt_size: Tensor, symmetric: Tensor | None = None, steps: int = SYMMETRY_STEPS) -> Tensor:
    """NOCS 3D IoU (N,) of row-wise pairs of posed boxes (rotations (N, 3, 3), translations and sizes (N, 3)).

    Each box is replaced by the camera-frame axis-aligned box around its eight corners, whose half-extents
    are ``|R| @ (size / 2)`` (the corners' bounds in closed form; ``box_corners`` is the slow reference).
    Rows where ``symmetric`` (N,) bool is True keep the best IoU over the predicted box turned about its own
    y axis by ``2 pi i / steps``, ``i = 0..steps-1``. Computed in float64.
    """
    pr, pt, ph = pred_rot.double(), pred_trans.double(), pred_size.double() / 2
    gt, gh = gt_trans.double(), (gt_rot.double().abs() @ (gt_size.double() / 2).unsqueeze(-1)).squeeze(-1)
    iou = _aligned_iou(pt, (pr.abs() @ ph.unsqueeze(-1)).squeeze(-1), gt, gh)
    if symmetric is not None and bool(symmetric.any()):
        rows = torch.nonzero(symmetric).squeeze(1)
        a = torch.arange(steps, dtype=torch.float64) * (2 * math.pi / steps)
        c, s, z, o = torch.cos(a), torch.sin(a), torch.zeros_like(a), torch.ones_like(a)
        ry = torch.stack([c, z, s, z, o, z, -s, z, c], -1).view(steps, 3, 3)  # rotation about y
        R = pr[rows][:, None] @ ry[None]  # (n, steps, 3, 3)
        half = (R.abs() @ ph[rows][:, None, :, None]).squeeze(-1)  # (n, steps, 3)
        best = _aligned_iou(pt[rows][:, None], half, gt[rows][:, None], gh[rows][:, None]).amax(1)
        iou = iou.index_put((rows,), best)
    return iou


def precision_recall(tp: Tensor, score: Tensor, num_gt: int) -> tuple[Tensor, Tensor]:
    """The curve of ``average_precision``: recall and monotone precision (float64), one point per distinct
    score (highest first), padded with ``(0, 0)`` before and ``(1, 0)`` after as NOCS does."""
    order = torch.argsort(score.double(), descending=True, stable=True)
    s, t = score.double()[order], tp[order].double()
    cum_tp = torch.cumsum(t, 0)
    last = torch.ones_like(s, dtype=torch.bool)  # the last detection of each group of equal scores
    last[:-1] = s[1:] != s[:-1]
    n = torch.arange(1, len(s) + 1, dtype=torch.float64)[last]
    cum_tp = cum_tp[last]
    zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    precision = torch.cat([zero, cum_tp / n, zero])
    recall = torch.cat([zero, cum_tp / max(num_gt, 1), one])
    precision = torch.flip(torch.cummax(torch.flip(precision, [0]), 0).values, [0])
    return recall, precision


def average_precision(tp: Tensor, score: Tensor, num_gt: int) -> Tensor:
    """AP of detections ``tp`` (K,) bool with ``score`` (K,) against ``num_gt`` ground truths (see the module
    docstring): NaN without ground truth, 0 without detections. Tied scores enter the curve together."""
    if num_gt == 0:
        return torch.tensor(math.nan)
    if tp.numel() == 0:
        return torch.tensor(0.0)
    recall, precision = precision_recall(tp, score, num_gt)
    return ((recall[1:] - recall[:-1]) * precision[1:]).sum().float()


def ground_truth(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The valid ground-truth instances of a batch, flat (G of them): ``image``, ``class_id``, ``quat``,
    ``rot`` (the box's rotation: ``inst_box_rot``, else ``inst_rot``, else from ``quat``), ``trans``, ``size``,
    ``handle_visible`` (True where the batch has no such key) and ``slot``
    (``b * M + k``); plus ``instance_map`` (B, H, W) holding ``1 + g`` on instance g's pixels."""
    valid = batch["inst_valid"]
    B, M = valid.shape
    slots = torch.nonzero(valid.reshape(-1)).squeeze(1)
    remap = torch.zeros(B * M + 1, dtype=torch.long, device=valid.device)  # slot + 1 -> 1 + g (0: none)
    remap[slots + 1] = torch.arange(1, len(slots) + 1, device=valid.device)
    inst = batch["instance_mask"].long()
    img = torch.arange(B, device=inst.device).view(B, 1, 1)
    instance_map = torch.where(inst > 0, remap[(img * M + inst).clamp_max(B * M)], 0)
    flat = lambda key, *shape: batch[key].reshape(B * M, *shape).index_select(0, slots)  # noqa: E731
    handle = flat("inst_handle_visible").bool() if "inst_handle_visible" in batch else \
        torch.ones(len(slots), dtype=torch.bool, device=valid.device)
    quat = flat("inst_quat", 4).float()
    # The box: as annotated where the batch has it (the NOCS loader canonicalises the yaw of symmetric
    # classes in inst_rot; NOCS's 3D IoU turns the predicted box against the annotated one).
    key = next((k for k in ("inst_box_rot", "inst_rot") if k in batch), None)
    rot = flat(key, 3, 3).float() if key else quat_to_rotmat(quat)
    return {"image": slots // M, "class_id": flat("inst_class").long(), "quat": quat, "rot": rot,
            "trans": flat("inst_trans", 3).float(), "size": flat("inst_size", 3).float(),
            "handle_visible": handle, "slot": slots, "instance_map": instance_map}


def mask_iou(pred_map: Tensor, num_pred: int, gt_map: Tensor, num_gt: int) -> Tensor:
    """2D IoU (K, G) of instance maps (B, H, W) holding ``1 + k`` / ``1 + g`` (0 = none)."""
    joint = torch.bincount(pred_map.reshape(-1).long() * (num_gt + 1) + gt_map.reshape(-1).long(),
                           minlength=(num_pred + 1) * (num_gt + 1)).view(num_pred + 1, num_gt + 1).double()
    inter = joint[1:, 1:]
    union = joint.sum(1)[1:, None] + joint.sum(0)[None, 1:] - inter
    return (inter / union.clamp_min(1)).float()


def match_detections(det: dict[str, Tensor], gt: dict[str, Tensor]) -> dict[str, Tensor]:
    """NOCS matching of detections to ground truth for every criterion of ``CRITERIA``.

    ``det``: ``image`` (K,), ``class_id`` (K,), ``score`` (K,), ``quat`` (K, 4) (and optionally ``rot`` (K, 3, 3),
    the same rotations as matrices: used for the 3D boxes when present), ``instance_map`` (B, H, W)
    and, for the 3D criteria, ``trans`` (K, 3) and ``size`` (K, 3) (without them those criteria never match).
    ``gt``: as returned by ``ground_truth``. Returns ``tp`` (K, T) bool (T = ``len(CRITERIA)``), ``gt_match``
    (G, T) long (the matched detection or -1), and the errors of every (detection, ground truth) pair of the
    same image and class: ``rot_err`` and ``trans_err_cm`` (K, G) (NaN elsewhere) and ``iou_2d``/``iou_3d``.
    """
    K, G = det["class_id"].numel(), gt["class_id"].numel()
    dev = det["class_id"].device
    iou2 = mask_iou(det["instance_map"], K, gt["instance_map"], G) if K and G else torch.zeros(K, G)
    same = (det["image"][:, None] == gt["image"][None, :]) & (det["class_id"][:, None] == gt["class_id"][None, :])
    pk, pg = torch.nonzero(same, as_tuple=True)
    rot_err = torch.full((K, G), math.nan, device=dev)
    trans_err = torch.full((K, G), math.nan, device=dev)
    iou3 = torch.zeros(K, G, dtype=torch.float64, device=dev)
    has_3d = "trans" in det and "size" in det
    if len(pk):
        sym = y_symmetric(gt["class_id"][pg], gt["handle_visible"][pg])
        rot_err[pk, pg] = rotation_error_deg(det["quat"][pk].float(), gt["quat"][pg], gt["class_id"][pg],
                                             gt["handle_visible"][pg])
        if has_3d:
            trans_err[pk, pg] = 100 * torch.linalg.vector_norm(det["trans"][pk].float() - gt["trans"][pg], dim=-1)
            pred_rot = det["rot"][pk].float() if "rot" in det else quat_to_rotmat(det["quat"][pk].float())
            iou = box_iou_3d(pred_rot, det["trans"][pk], det["size"][pk],
                             gt["rot"][pg], gt["trans"][pg], gt["size"][pg], sym)
            iou3[pk, pg] = torch.where(torch.isnan(rot_err[pk, pg]), 0.0, iou)  # no rotation: a miss
    # Priority per criterion (T, K, G): higher is better, -inf where the pair does not meet the criterion.
    inf = torch.tensor(-math.inf, dtype=torch.float64)
    r, t, i2 = rot_err.double(), trans_err.double(), iou2.double().where(same, torch.zeros(()))
    rows = [torch.where(same & (iou3 >= th), iou3, inf) for th in IOU_THRESHOLDS] if has_3d else \
        [torch.full((K, G), -math.inf, dtype=torch.float64) for _ in IOU_THRESHOLDS]
    rows += [torch.where(same & (r <= d) & (t <= c), -(r + t), inf) for d, c in POSE_THRESHOLDS]
    rows += [torch.where(same & (r <= d) & (i2 >= DETECTION_IOU), -r, inf) for d in ROT_THRESHOLDS]
    rows += [torch.where(same & (i2 >= DETECTION_IOU), i2, inf)]
    priority = torch.stack(rows).cpu().numpy()  # (T, K, G); NaN errors compare False: never eligible
    T = len(CRITERIA)
    tp = np.zeros((K, T), bool)
    gt_match = np.full((T, G), -1, np.int64)
    taken = np.zeros((T, G), bool)
    cols = np.arange(T)
    order = torch.argsort(det["score"].double().cpu(), descending=True, stable=True).numpy()
    if G:
        for k in order:  # a detection only competes in its own image: a global score order is per-image order
            p = np.where(taken, -np.inf, priority[:, k, :])
            best = p.argmax(1)
            ok = p[cols, best] > -np.inf
            tp[k] = ok
            taken[cols[ok], best[ok]] = True
            gt_match[cols[ok], best[ok]] = k
    return {"tp": torch.from_numpy(tp).to(dev), "gt_match": torch.from_numpy(gt_match.T.copy()).to(dev),
            "rot_err": rot_err, "trans_err_cm": trans_err, "iou_2d": iou2, "iou_3d": iou3.float()}


class PoseEvaluation(Metric):
    """NOCS-standard APs per class and averaged, and four summaries (see the module docstring).

    ``update(det, batch)`` with the detections of a batch (``fastpose.pose.aggregate.predicted_instances``
    plus ``trans``/``size`` when the model predicts them) and the batch itself. ``compute()`` returns:

    - ``<criterion>`` for each of ``iou_25 .. 10deg_10cm, 5deg, 10deg, 20deg``: the mean over classes with
      ground truth of the per-class AP ``<criterion>/<class>`` (NaN for a class without ground truth).
      With ``use_3d=False`` the ``iou_*`` and ``Ndeg_Mcm`` keys are left out.
    - ``miss_rate``: ground-truth instances matched by no detection (2D mask IoU >= 0.5, same class), over
      all ground-truth instances.
    - ``false_positive_rate``: detections matched to no ground truth (duplicates included), over all
      detections; NaN when there are none.
    - ``rot_err_median`` (degrees) and ``trans_err_median_cm``: medians over the detection-matched pairs only
      (mask IoU >= 0.5); a matched zero quaternion counts as 180 degrees. NaN when nothing matched.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int = len(CLASSES), use_3d: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.use_3d = num_classes, use_3d
        self.add_state("score", default=[], dist_reduce_fx="cat")
        self.add_state("det_class", default=[], dist_reduce_fx="cat")
        self.add_state("tp", default=[], dist_reduce_fx="cat")
        self.add_state("rot_err", default=[], dist_reduce_fx="cat")
        self.add_state("trans_err", default=[], dist_reduce_fx="cat")
        self.add_state("gt_count", default=torch.zeros(num_classes + 1, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("gt_missed", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, det: dict[str, Tensor], batch: dict[str, Tensor]) -> None:
        from fastpose.pose.indexing import single_threaded  # (looked up per call: the benchmark swaps it)

        with single_threaded(det["score"].device):  # small passes: see ``detect``
            self._update(det, batch)

    def _update(self, det: dict[str, Tensor], batch: dict[str, Tensor]) -> None:
        gt = ground_truth(batch)
        m = match_detections(det, gt)
        self.score.append(det["score"].float())
        self.det_class.append(det["class_id"].long())
        self.tp.append(m["tp"].to(torch.uint8))  # uint8: gloo cannot all-gather bool tensors
        self.gt_count += torch.bincount(gt["class_id"], minlength=self.num_classes + 1).to(self.gt_count)
        hit = m["gt_match"][:, CRITERIA.index("det")]
        self.gt_missed += int((hit < 0).sum())
        g = torch.nonzero(hit >= 0).squeeze(1)
        self.rot_err.append(m["rot_err"][hit[g], g].float())
        self.trans_err.append(m["trans_err_cm"][hit[g], g].float())

    def _rows(self) -> tuple[Tensor, Tensor, Tensor]:
        T = len(CRITERIA)
        if not len(self.score):
            return torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0, T, dtype=torch.bool)
        return (dim_zero_cat(self.score).cpu(), dim_zero_cat(self.det_class).cpu(),
                dim_zero_cat(self.tp).cpu().view(-1, T).bool())

    def pr_curves(self, criterion: str) -> dict[int, tuple[Tensor, Tensor]]:
        """Per class with ground truth: ``(recall, precision)`` of ``precision_recall`` for ``criterion``."""
        score, cls, tp = self._rows()
        j = CRITERIA.index(criterion)
        counts = self.gt_count.cpu()
        return {c: precision_recall(tp[cls == c, j], score[cls == c], int(counts[c]))
                for c in range(1, self.num_classes + 1) if int(counts[c])}

    def compute(self) -> dict[str, Tensor]:
        T = len(CRITERIA)
        if len(self.score):
            score, cls = dim_zero_cat(self.score).cpu(), dim_zero_cat(self.det_class).cpu()
            tp = dim_zero_cat(self.tp).cpu().view(-1, T).bool()
            rot, trans = dim_zero_cat(self.rot_err).cpu(), dim_zero_cat(self.trans_err).cpu()
        else:
            score, cls, tp = torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0, T, dtype=torch.bool)
            rot = trans = torch.zeros(0)
        counts = self.gt_count.cpu()
        names = CLASSES if self.num_classes == len(CLASSES) else tuple(str(c) for c in range(1, self.num_classes + 1))
        out: dict[str, Tensor] = {}
        reported = CRITERIA[:-1] if self.use_3d else ROT_NAMES
        for crit in reported:
            j = CRITERIA.index(crit)
            aps = []
            for c in range(1, self.num_classes + 1):
                of_c = cls == c
                ap = average_precision(tp[of_c, j], score[of_c], int(counts[c]))
                out[f"{crit}/{names[c - 1]}"] = ap
                aps.append(ap)
            aps_t = torch.stack(aps)
            present = ~torch.isnan(aps_t)
            out[crit] = aps_t[present].mean() if bool(present.any()) else torch.tensor(math.nan)
        nan = torch.tensor(math.nan)
        n_gt, n_det = int(counts.sum()), len(score)
        out["miss_rate"] = torch.tensor(float(self.gt_missed) / n_gt) if n_gt else nan
        out["false_positive_rate"] = torch.tensor(1.0 - tp[:, -1].float().mean().item()) if n_det else nan
        out["rot_err_median"] = torch.quantile(rot.nan_to_num(180.0), 0.5) if rot.numel() else nan
        if self.use_3d:
            out["trans_err_median_cm"] = torch.quantile(trans, 0.5) if trans.numel() else nan
        return out


def detect(out: dict[str, Tensor], intrinsics: Tensor | None = None, min_pixels: int | None = None) -> dict[str, Tensor]:
    """Detections from network outputs: ``fastpose.pose.aggregate.predicted_instances`` (image, class_id,
    score, quat for every rotation representation (6D and 9D also give rot), area, instance_map), plus
    ``trans`` (K, 3) and ``size`` (K, 3) when the network predicts them (see ``fastpose.pose.translation``),
    recovered with the batch's ``intrinsics`` (B, 3, 3), and the projected centre ``centre_uv`` (K, 2). On
    CPU it runs on one intra-op thread (``single_threaded``: its hundreds of small passes lose more at the
    threads' barriers than they gain, badly so on a busy machine)."""
    from fastpose.pose.aggregate import predicted_instances
    from fastpose.pose.indexing import single_threaded  # (looked up per call: the benchmark swaps it)

    with torch.no_grad(), single_threaded(out["mask_logits"].device):
        det = predicted_instances(out, min_pixels)
        if "centre" in out and intrinsics is not None:
            from fastpose.pose.translation import recover_translation

            det["trans"], det["size"], det["centre_uv"] = recover_translation(
                out, det["pixel"], det["pixel_instance"], det["image"], det["class_id"], intrinsics)
        return det


def class_means(dataset, num_classes: int = len(CLASSES), samples: int = 256) -> tuple[Tensor, Tensor]:
    """Per-class mean depth (C + 1,) and size (C + 1, 3) of the ground truth of the first ``samples`` items of
    ``dataset`` (the trivial baseline's priors; row 0 and classes never seen hold the overall mean)."""
    depth_sum = torch.zeros(num_classes + 1, dtype=torch.float64)
    size_sum = torch.zeros(num_classes + 1, 3, dtype=torch.float64)
    count = torch.zeros(num_classes + 1, dtype=torch.float64)
    for i in range(min(samples, len(dataset))):
        s = dataset[i]
        v = s["inst_valid"]
        c = s["inst_class"][v]
        count.index_add_(0, c, torch.ones(len(c), dtype=torch.float64))
        depth_sum.index_add_(0, c, s["inst_trans"][v][:, 2].double())
        size_sum.index_add_(0, c, s["inst_size"][v].double())
    total = count.sum().clamp_min(1)
    depth = torch.where(count > 0, depth_sum / count.clamp_min(1), depth_sum.sum() / total)
    size = torch.where(count[:, None] > 0, size_sum / count.clamp_min(1)[:, None], size_sum.sum(0) / total)
    return depth.float(), size.float()


def trivial_baseline(det: dict[str, Tensor], intrinsics: Tensor, depth: Tensor, size: Tensor) -> dict[str, Tensor]:
    """The same detections with a trivial pose: the box centred on the ray through the instance mask's
    centroid at the class-mean ``depth`` (C + 1,), the class-mean ``size`` (C + 1, 3), identity rotation."""
    from fastpose.pose.translation import _pixel_uv, back_project, group_mean

    H, W = det["instance_map"].shape[-2:]
    K = det["class_id"].numel()
    out = {k: v for k, v in det.items() if k != "rot"}  # the identity below replaces any predicted rotation
    if K == 0:
        out["trans"], out["size"] = torch.zeros(0, 3), torch.zeros(0, 3)
        out["quat"] = torch.zeros(0, 4)
        return out
    centroid = group_mean(_pixel_uv(det["pixel"], H, W), det["pixel_instance"], K)
    z = depth.to(centroid).index_select(0, det["class_id"])
    out["trans"] = back_project(centroid, z, intrinsics.float().index_select(0, det["image"]))
    out["size"] = size.to(centroid).index_select(0, det["class_id"])
    out["quat"] = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(K, 4).clone()
    return out
