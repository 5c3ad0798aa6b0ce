"""Per-instance quaternions from per-pixel ones, predicted instances, and matching to ground truth.

Everything here is vectorised over images and instances (scatter/index ops); no Python loop runs over
instances. The naive per-instance reference lives only in ``tests/bench/bench_pose.py``.

Averaging. ``q`` and ``-q`` are the same rotation, so a plain mean of pixel quaternions lets them cancel.
``aggregate_quaternions`` first takes, per instance and without gradient, Markley's average (the top
eigenvector of ``sum q q^T``; Markley et al. 2007, "Averaging quaternions") as a reference, flips every
pixel quaternion to the reference's hemisphere, and returns the normalised mean of the flipped unit
quaternions. The mean carries the gradient (the eigenvector does not), so losses on it are smooth.

Predicted instances (evaluation). Pixels take the arg-max class of ``mask_logits``; an instance is a
4-connected component of one predicted class with at least ``min_pixels`` pixels. Components are labelled
by propagating the largest pixel id between same-class 4-neighbours with pointer jumping (vectorised over
the batch; the loop runs over propagation steps, about log2 of the largest component's diameter). Two touching
objects of the same class therefore merge into one instance, a limitation shared with any mask-only
method. The instance's score is the mean soft-max probability of its class over its pixels, its
quaternion the aggregate of its pixels' quaternions in its class's field.

Matching. A predicted instance may match a ground-truth instance of the same image and class when their
2D mask IoU is at least ``iou_threshold``; pairs are taken greedily by decreasing IoU, each instance used
at most once (computed as rounds of mutually-best pairs, which gives the same result). A ground-truth
instance without a match is a miss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fastpose.pose.rotations import safe_normalize


def aggregate_quaternions(q: Tensor, group: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """Sign-aligned mean of pixel quaternions ``q`` (P, 4) per ``group`` (P,) in ``0..num_groups-1``.

    Returns ``(mean, count)``: unit quaternions (num_groups, 4) (zero for an empty group) and pixel counts.
    """
    qn = safe_normalize(q)
    count = torch.bincount(group, minlength=num_groups)
    with torch.no_grad():
        outer = (qn.detach().unsqueeze(-1) * qn.detach().unsqueeze(-2)).reshape(-1, 16)
        scatter = torch.zeros(num_groups, 16, dtype=q.dtype, device=q.device).index_add_(0, group, outer)
        # eigh on a 4x4 symmetric matrix; a tiny ridge keeps empty groups well defined.
        ref = torch.linalg.eigh(scatter.view(-1, 4, 4).double() + 1e-12 * torch.eye(4, device=q.device,
                                dtype=torch.float64))[1][..., -1].to(q.dtype)
        sign = torch.where((qn.detach() * ref[group]).sum(-1) < 0, -1.0, 1.0).to(q.dtype)
    total = torch.zeros(num_groups, 4, dtype=q.dtype, device=q.device).index_add(0, group, qn * sign[:, None])
    return safe_normalize(total), count


def class_field_pixels(quaternion: Tensor, b: Tensor, pix: Tensor, cls: Tensor) -> Tensor:
    """Pixel quaternions (P, 4) from ``quaternion`` (B, 4C, H, W) at image ``b``, flat pixel ``pix``,
    in the field of class ``cls`` (1..C)."""
    B, C4, H, W = quaternion.shape
    field = quaternion.view(B, C4 // 4, 4, H * W)
    return field[b, (cls - 1).clamp_min(0), :, pix]


def gt_instance_quaternions(out: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Training path: aggregate predicted quaternions over each ground-truth instance's pixels.

    Uses the field of the instance's ground-truth class. Returns ``pred`` (N, 4) unit quaternions,
    ``gt`` (N, 4), ``class_id`` (N,) and ``count`` (N,) for the N valid instances with visible pixels.
    """
    inst = batch["instance_mask"]
    B, H, W = inst.shape
    M = batch["inst_valid"].shape[1]
    flat = inst.reshape(B, H * W)
    b, pix = (flat > 0).nonzero(as_tuple=True)
    slot = flat[b, pix] - 1
    cls = batch["class_mask"].reshape(B, H * W)[b, pix]
    q = class_field_pixels(out["quaternion"], b, pix, cls)
    mean, count = aggregate_quaternions(q, b * M + slot, B * M)
    keep = (count > 0) & batch["inst_valid"].reshape(-1)
    return {"pred": mean[keep], "gt": batch["inst_quat"].reshape(-1, 4)[keep],
            "class_id": batch["inst_class"].reshape(-1)[keep], "count": count[keep]}


def connected_components(labels: Tensor, max_iter: int | None = None) -> Tensor:
    """4-connected components of equal non-zero labels in (B, H, W); returns (B, H, W) component ids.

    Component ids are ``1 + the largest flat pixel index in the component`` (0 = background), unique per
    image, not contiguous. Each step takes the maximum id over same-label 4-neighbours, then jumps to the
    id held by the pixel that the current id names (pointer jumping), so the number of steps grows with the
    logarithm of a component's diameter rather than the diameter. Vectorised over the batch.
    """
    B, H, W = labels.shape
    fg = labels > 0
    ids = torch.arange(1, H * W + 1, device=labels.device).view(1, H, W)
    cur = torch.where(fg, ids, 0)
    same_v = (labels[:, 1:, :] == labels[:, :-1, :]) & fg[:, 1:, :]  # pixel and the one below: same label
    same_h = (labels[:, :, 1:] == labels[:, :, :-1]) & fg[:, :, 1:]
    for _ in range(max_iter or H * W):
        nxt = cur.clone()
        nxt[:, :-1, :] = torch.maximum(nxt[:, :-1, :], cur[:, 1:, :] * same_v)
        nxt[:, 1:, :] = torch.maximum(nxt[:, 1:, :], cur[:, :-1, :] * same_v)
        nxt[:, :, :-1] = torch.maximum(nxt[:, :, :-1], cur[:, :, 1:] * same_h)
        nxt[:, :, 1:] = torch.maximum(nxt[:, :, 1:], cur[:, :, :-1] * same_h)
        flat = nxt.view(B, H * W)
        jumped = flat.gather(1, (flat - 1).clamp_min(0)) * fg.view(B, H * W)
        nxt = torch.maximum(flat, jumped).view(B, H, W)
        if torch.equal(nxt, cur):
            break
        cur = nxt
    return cur


def predicted_instances(out: dict[str, Tensor], min_pixels: int | None = None) -> dict[str, Tensor]:
    """Instances from the predicted mask (see the module docstring). Returns flat per-instance tensors:
    ``image`` (K,), ``class_id`` (K,), ``score`` (K,), ``quat`` (K, 4), ``area`` (K,) and the per-pixel
    ``instance_map`` (B, H, W) with values ``0`` (none) or ``1 + instance index``."""
    logits = out["mask_logits"]
    B, C1, H, W = logits.shape
    min_pixels = max(4, H * W // 512) if min_pixels is None else min_pixels
    prob = logits.detach().float().softmax(1)
    conf, cls = prob.max(1)
    comp = connected_components(cls).reshape(B, H * W)
    b, pix = (comp > 0).nonzero(as_tuple=True)
    key = b * (H * W + 1) + comp[b, pix]
    uniq, inv, area = torch.unique(key, return_inverse=True, return_counts=True)
    big = area >= min_pixels
    new_id = torch.cumsum(big.long(), 0) - 1  # compact ids for the kept components
    keep_pix = big[inv]
    b, pix, inv = b[keep_pix], pix[keep_pix], new_id[inv[keep_pix]]
    K = int(big.sum())
    pix_cls = cls.reshape(B, H * W)[b, pix]
    q = class_field_pixels(out["quaternion"].detach(), b, pix, pix_cls)
    quat, area_k = aggregate_quaternions(q.float(), inv, K)
    score = torch.zeros(K, device=logits.device).index_add_(0, inv, conf.reshape(B, H * W)[b, pix]) \
        / area_k.clamp_min(1)
    image = uniq[big] // (H * W + 1)
    class_id = torch.zeros(K, dtype=torch.long, device=logits.device)
    class_id[inv] = pix_cls  # every pixel of a component has its class
    instance_map = torch.zeros(B, H * W, dtype=torch.long, device=logits.device)
    instance_map[b, pix] = inv + 1
    return {"image": image, "class_id": class_id, "score": score, "quat": quat, "area": area_k,
            "instance_map": instance_map.view(B, H, W)}


def match_instances(pred_map: Tensor, pred_class: Tensor, gt_map: Tensor, gt_class: Tensor,
                    iou_threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Greedy one-to-one matching by 2D mask IoU, same class only.

    ``pred_map`` (B, H, W) holds ``1 + k`` for predicted instance k (K of them, classes ``pred_class`` (K,));
    ``gt_map`` (B, H, W) holds ``1 + g`` for ground-truth instance g (G of them, classes ``gt_class`` (G,)),
    both with ids global over the batch. Returns ``(pred_index, iou)`` per ground truth (G,), ``-1`` and 0
    where unmatched.
    """
    K, G = pred_class.numel(), gt_class.numel()
    dev = gt_map.device
    if K == 0 or G == 0:
        return torch.full((G,), -1, dtype=torch.long, device=dev), torch.zeros(G, device=dev)
    p, g = pred_map.reshape(-1), gt_map.reshape(-1)
    area_p = torch.bincount(p, minlength=K + 1)[1:]
    area_g = torch.bincount(g, minlength=G + 1)[1:]
    both = (p > 0) & (g > 0)
    inter = torch.bincount((p[both] - 1) * G + (g[both] - 1), minlength=K * G).view(K, G).float()
    iou = inter / (area_p[:, None] + area_g[None, :] - inter).clamp_min(1)
    iou = torch.where((pred_class[:, None] == gt_class[None, :]) & (iou >= iou_threshold) & (inter > 0),
                      iou, torch.zeros_like(iou))
    pred_index = torch.full((G,), -1, dtype=torch.long, device=dev)
    best_iou = torch.zeros(G, device=dev)
    for _ in range(min(K, G)):  # rounds of mutually-best pairs; usually one or two
        if not bool((iou > 0).any()):
            break
        best_g = iou.argmax(1)  # per prediction
        best_p = iou.argmax(0)  # per ground truth
        gi = torch.arange(G, device=dev)
        mutual = (best_g[best_p] == gi) & (iou[best_p, gi] > 0)
        gm, pm = gi[mutual], best_p[mutual]
        pred_index[gm], best_iou[gm] = pm, iou[pm, gm]
        iou[pm, :] = 0
        iou[:, gm] = 0
    return pred_index, best_iou


def evaluate_batch(out: dict[str, Tensor], batch: dict[str, Tensor], iou_threshold: float = 0.5,
                   min_pixels: int | None = None) -> dict[str, Tensor]:
    """Predicted instances matched to every valid ground-truth instance of the batch (N of them).

    Returns ``pred_quat`` (N, 4) (zeros where missed), ``gt_quat`` (N, 4), ``class_id`` (N,) ground-truth
    class, ``score`` (N,) confidence of the matched prediction (0 where missed), ``matched`` (N,) bool,
    plus ``iou`` (N,) and ``image`` (N,) index in the batch.
    """
    with torch.no_grad():
        pred = predicted_instances(out, min_pixels)
        inst = batch["instance_mask"]
        B, H, W = inst.shape
        M = batch["inst_valid"].shape[1]
        valid = batch["inst_valid"].reshape(-1)
        # Global ground-truth ids over the batch: 1 + (b * M + slot), remapped to the valid ones.
        remap = torch.cumsum(valid.long(), 0) * valid  # 1-based id of each valid slot, 0 otherwise
        slot_global = torch.where(inst > 0, torch.arange(B, device=inst.device).view(B, 1, 1) * M + inst - 1, 0)
        gt_map = torch.where(inst > 0, remap[slot_global], 0)
        gt_class = batch["inst_class"].reshape(-1)[valid]
        pred_index, iou = match_instances(pred["instance_map"], pred["class_id"], gt_map, gt_class, iou_threshold)
        matched = pred_index >= 0
        safe = pred_index.clamp_min(0)
        zero = torch.zeros((), device=inst.device)
        return {
            "pred_quat": torch.where(matched[:, None], pred["quat"][safe] if pred["quat"].numel() else
                                     torch.zeros(len(safe), 4, device=inst.device), zero),
            "gt_quat": batch["inst_quat"].reshape(-1, 4)[valid].float(),
            "class_id": gt_class,
            "score": torch.where(matched, pred["score"][safe] if pred["score"].numel() else
                                 torch.zeros(len(safe), device=inst.device), zero),
            "matched": matched,
            "iou": iou,
            "image": torch.arange(B, device=inst.device).repeat_interleave(M)[valid],
        }
