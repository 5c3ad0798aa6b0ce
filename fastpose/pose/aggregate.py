"""Per-instance rotations from per-pixel ones, predicted instances, and matching to ground truth.

Everything here is vectorised over images and instances (scatter/index ops); no Python loop runs over
instances. The naive per-instance reference lives only in ``tests/bench/bench_pose.py``.

Averaging. ``q`` and ``-q`` are the same rotation, so a plain mean of pixel quaternions lets them cancel.
``aggregate_quaternions`` picks signs without gradient: per instance, the quaternion component with the
largest mean square (the largest diagonal entry of Markley's matrix ``sum q q^T``; Markley et al. 2007)
is made positive, the pixels are averaged once, and every pixel is then flipped to the hemisphere of that
first mean. It returns the normalised mean of the flipped unit quaternions, which carries the gradient.
For concentrated pixel sets this equals Markley's eigenvector average (tested) at the cost of two
scatter-adds of (P, 4) instead of a (P, 16) one and a batch of 4x4 eigen-decompositions.
The 6D and 9D heads have no sign ambiguity: ``aggregate_rotmats`` averages their raw pixel vectors (one
``index_add``) and maps the mean to SO(3) once (Gram-Schmidt, or the SVD projection); its docstring says why.

Predicted instances (evaluation). A pixel is foreground when the background probability is below 1/2
(all classes together beat background), and then takes its most likely object class; an instance is a
4-connected component of one predicted class with at least ``min_pixels`` pixels. Components are labelled
for the whole batch at once: pixels are grouped into horizontal runs, then a parallel union-find joins runs
over their vertical same-class contacts (scatter-max hooking and pointer jumping; the loop runs over a
handful of steps, not over instances). Only pixels that may be foreground (``l_0 < max_c l_c + log C``, a
bound on the log-sum-exp) reach the soft-max, laid out channel-first so that its reductions are cheap.
Two touching objects of the same class merge into one instance, a limitation shared with any mask-only
method. The instance's score is the mean soft-max probability of its class over its pixels, its
rotation the aggregate of its pixels' rotation vectors in its class's field (a quaternion for every
representation; the 6D and 9D heads also give the matrix).

Matching. A predicted instance may match a ground-truth instance of the same image and class when their
2D mask IoU is at least ``iou_threshold``; pairs are taken greedily by decreasing IoU, each instance used
at most once (computed as rounds of mutually-best pairs, which gives the same result). A ground-truth
instance without a match is a miss.

Speed on CPU (``tests/bench/bench_pose.py``). The work is a few dozen passes over (P,)-sized tensors, so
memory traffic decides: indices are int32 where they fit, each pass computes one integer division at most
(the image index is carried along), ``torch.nonzero`` goes through numpy (several times faster on CPU),
the class arg-max is a min over keys (``max(0)`` and ``argmax(0)`` over a leading dimension are slow),
pixels of components too small to keep are dropped before their quaternions are gathered, and
intersections are counted on ground-truth foreground only. None of this changes a result: the outputs
are bit-identical to the straightforward version's (checked on the benchmark's inputs and in training).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fastpose.pose.indexing import flat_nonzero, index_dtype
from fastpose.pose.rotations import (
    _NORM_EPS,
    FIELD_KEYS,
    ROTATION_CHANNELS,
    quat_to_rotmat,
    rot6d_to_rotmat,
    rot9d_to_rotmat,
    rotation_kind,
    rotmat_to_quat,
    safe_normalize,
)


def aggregate_quaternions(q: Tensor, group: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """Sign-aligned mean of pixel quaternions ``q`` (P, 4) per ``group`` (P,) in ``0..num_groups-1``.

    Returns ``(mean, count)``: unit quaternions (num_groups, 4) (zero for an empty group) and pixel counts.
    """
    idx = index_dtype(num_groups * 4)  # int32 indices where they fit: bincount and gathers run faster
    group = group.to(idx)
    count = torch.bincount(group, minlength=num_groups)
    ones = torch.ones(4, dtype=q.dtype, device=q.device)  # sums over the last dimension of 4 as mat-vecs:
    qn = q * ((q * q) @ ones).clamp_min(_NORM_EPS ** 2).rsqrt()[:, None]  # faster than small reductions
    slot = (group[:, None] * 4 + torch.arange(4, dtype=idx, device=q.device)).reshape(-1)  # (group, component)

    def group_sum(v: Tensor) -> Tensor:  # (P, 4) -> (num_groups, 4); bincount is faster, index_add differentiable
        if v.requires_grad:
            z = torch.zeros(num_groups * 4, dtype=q.dtype, device=q.device)
            return z.index_add(0, slot, v.reshape(-1)).view(num_groups, 4)
        return torch.bincount(slot, v.reshape(-1), minlength=num_groups * 4).to(q.dtype).view(num_groups, 4)

    with torch.no_grad():
        qd = qn.detach()
        # Reference signs: the component with the largest mean square (the largest diagonal entry of
        # Markley's matrix sum q q^T; at least 1/4 for a unit quaternion) is made positive ...
        element = index_dtype(4 * len(q))
        axis = group_sum(qd * qd).argmax(1).to(element).index_select(0, group)
        pivot = qd.reshape(-1).index_select(0, torch.arange(0, 4 * len(q), 4, dtype=element, device=q.device) + axis)
        first = group_sum(qd * torch.where(pivot < 0, -1.0, 1.0).to(q.dtype)[:, None])
        # ... then every pixel is flipped to the hemisphere of that first mean.
        sign = torch.where((qd * first.index_select(0, group)) @ ones < 0, -1.0, 1.0).to(q.dtype)
    return safe_normalize(group_sum(qn * sign[:, None])), count


def _pixel_elements(t: Tensor, flat_pixel: Tensor, image: Tensor | None = None) -> tuple[Tensor, Tensor, int]:
    """Where pixels lie in memory in a (B, K, H, W) tensor, without copying an NCHW or channels-last one.

    ``image`` (P,) is ``flat_pixel // (H * W)`` when the caller has it. Returns ``(elements, offset,
    channel_stride)``: a 1-D view of ``t``'s elements in memory order, the position in it of channel 0 at
    each flat pixel ``b * H * W + p`` (P,), int32 where ``t`` is small enough, and the step between channels.
    """
    B, K, H, W = t.shape
    if not (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)):
        t = t.contiguous()
    sb, sk, sh, sw = t.stride()
    b = flat_pixel // (H * W) if image is None else image
    if (sh, sw) == (W, 1):  # NCHW: b * sb + p with p = flat_pixel - b * H * W
        elements, offset = t.reshape(-1), flat_pixel + b * (sb - H * W)
    else:  # channels-last (sh == W * sw): b * sb + p * sw
        elements, offset = t.as_strided((t.numel(),), (1,)), flat_pixel * sw + b * (sb - H * W * sw)
    return elements, offset.to(index_dtype(t.numel())), sk


def class_field_pixels(field: Tensor, flat_pixel: Tensor, cls: Tensor, image: Tensor | None = None,
                       width: int = 4) -> Tensor:
    """Pixel vectors (P, width) from ``field`` (B, width * C, H, W) (a quaternion field by default) at flat
    pixel indices ``b * H * W + p``, each in the field of its class ``cls`` (P,) in 1..C (0 is read as 1);
    ``image`` as in ``_pixel_elements``."""
    elements, offset, sk = _pixel_elements(field, flat_pixel, image)
    base = offset + (cls - 1).clamp_min(0).to(offset.dtype) * (width * sk)  # channel width * (c - 1)
    idx = base[:, None] + torch.arange(0, width * sk, sk, dtype=offset.dtype, device=field.device)
    return elements.index_select(0, idx.reshape(-1)).view(-1, width)


def aggregate_rotmats(x: Tensor, group: Tensor, num_groups: int, kind: str) -> tuple[Tensor, Tensor]:
    """Per-instance rotation matrices from raw 6D or 9D pixel vectors ``x`` (P, 6 | 9) per ``group`` (P,).

    The raw vectors are averaged per group (one ``index_add``), then the mean is mapped to SO(3) once:
    Gram-Schmidt for ``kind="6d"``, the SVD projection with the determinant fix for ``"9d"``. Neither
    representation has a sign ambiguity, so a plain mean is safe (unlike quaternions). Returns ``(R, count)``:
    (num_groups, 3, 3) and pixel counts (an empty group's matrix is meaningless; callers drop it).

    Why the raw mean, then one projection (and not a projection per pixel, then a mean of matrices): both
    maps commit to a rotation only at the end, as the representation's papers do (Zhou et al. 2019; Levinson
    et al. 2020, whose SVD projection of a sum of matrices is the least-squares fit to all its terms); the
    projection of the mean is equivariant (``project(Q M) = Q project(M)`` for a rotation ``Q``); pixels
    with larger (more decided) outputs weigh more, and near-zero ones, whose projection is arbitrary, weigh
    little; and it costs one projection per instance instead of one per pixel (thousands of 3x3 SVDs per
    step on a CPU).
    """
    width = ROTATION_CHANNELS[kind]
    group = group.to(torch.long)
    count = torch.bincount(group, minlength=num_groups)
    total = torch.zeros(num_groups, width, dtype=x.dtype, device=x.device).index_add(0, group, x)
    mean = total / count.clamp_min(1).to(x.dtype)[:, None]
    return (rot6d_to_rotmat(mean) if kind == "6d" else rot9d_to_rotmat(mean)), count


def _gt_foreground(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Ground-truth foreground pixels: flat positions ``b * H * W + p`` (n,), their image ``b`` (n,), and
    their instance slot over the batch ``b * M + k`` (n,), from ``instance_mask`` (values 1..M)."""
    inst = batch["instance_mask"]
    B, H, W = inst.shape
    M = batch["inst_valid"].shape[1]
    flat = inst.reshape(-1)
    f = flat_nonzero(flat > 0)
    image = f // (H * W)
    return f, image, image * M + flat.index_select(0, f) - 1


def gt_instance_quaternions(out: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Training path: aggregate predicted quaternions over each ground-truth instance's pixels.

    Uses the field of the instance's ground-truth class. Returns ``pred`` (N, 4) unit quaternions,
    ``gt`` (N, 4), ``class_id`` (N,) and ``count`` (N,) for the N valid instances with visible pixels.
    """
    B, M = batch["inst_valid"].shape
    f, image, group = _gt_foreground(batch)
    cls = batch["class_mask"].reshape(-1).index_select(0, f)
    q = class_field_pixels(out["quaternion"], f, cls, image).float()  # fp32 under AMP
    mean, count = aggregate_quaternions(q, group, B * M)
    keep = flat_nonzero((count > 0) & batch["inst_valid"].reshape(-1))
    return {"pred": mean.index_select(0, keep), "gt": batch["inst_quat"].reshape(-1, 4).index_select(0, keep).float(),
            "class_id": batch["inst_class"].reshape(-1).index_select(0, keep), "count": count.index_select(0, keep)}


def gt_instance_rotations(out: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Training path for the matrix representations (6D, 9D): ``aggregate_rotmats`` of each ground-truth
    instance's pixels, in the field of its ground-truth class. Returns ``pred`` (N, 3, 3) rotations, ``gt``
    (N, 3, 3) (``inst_rot`` where the batch has it, else the matrix of ``inst_quat``), ``class_id`` (N,) and
    ``count`` (N,) for the N valid instances with visible pixels."""
    kind = rotation_kind(out)
    B, M = batch["inst_valid"].shape
    f, image, group = _gt_foreground(batch)
    cls = batch["class_mask"].reshape(-1).index_select(0, f)
    x = class_field_pixels(out[FIELD_KEYS[kind]], f, cls, image, ROTATION_CHANNELS[kind]).float()  # fp32 under AMP
    rot, count = aggregate_rotmats(x, group, B * M, kind)
    keep = flat_nonzero((count > 0) & batch["inst_valid"].reshape(-1))
    gt = batch["inst_rot"].reshape(-1, 3, 3) if "inst_rot" in batch else quat_to_rotmat(batch["inst_quat"].reshape(-1, 4))
    return {"pred": rot.index_select(0, keep), "gt": gt.index_select(0, keep).float(),
            "class_id": batch["inst_class"].reshape(-1).index_select(0, keep), "count": count.index_select(0, keep)}


def connected_components(labels: Tensor, max_iter: int | None = None) -> Tensor:
    """4-connected components of equal non-zero labels in (B, H, W); returns (B, H, W) component ids.

    Ids are ``1 +`` the largest foreground-pixel rank in the component (0 = background; ranks number the
    non-zero pixels of the batch in flat order from 0): unique over the whole batch, not contiguous.
    Pixels are first grouped into runs (maximal horizontal segments of one label, found by a cumulative
    sum); a parallel union-find then joins runs (in the spirit of Shiloach and Vishkin 1982) over the
    vertical same-label contacts of two runs, keeping only the contacts where either pixel starts its run
    (the others repeat an edge). Every run points to a larger run of its component; each step hooks the
    parents of both ends of every edge under the larger of the two (a scatter-max) and then halves path
    lengths (pointer jumping), so a few steps over a few thousand runs suffice.
    """
    B, H, W = labels.shape
    flat = labels.reshape(-1)
    pos = flat_nonzero(flat > 0)  # foreground positions in B*H*W, increasing
    out = torch.zeros(B * H * W, dtype=torch.long, device=labels.device)
    out[pos] = _component_ids(flat, pos, H, W, max_iter)
    return out.view(B, H, W)


def _component_ids(flat: Tensor, pos: Tensor, H: int, W: int, max_iter: int | None = None,
                   image: Tensor | None = None) -> Tensor:
    """``connected_components`` on the flat label map ``flat`` (B*H*W,) given its foreground positions
    ``pos`` (n,) in increasing order (and ``image`` = ``pos // (H * W)`` when the caller has it); returns
    the component id of each of them (n,)."""
    if pos.numel() == 0:
        return pos.clone()
    BHW = flat.numel()
    idx = index_dtype(BHW + W)  # int32 run ids and positions where they fit: less memory traffic
    image = pos // (H * W) if image is None else image
    lab = flat.index_select(0, pos)
    row_start = (pos // W) * W
    start = (pos == row_start) | (flat.index_select(0, (pos - 1).clamp_min(0)) != lab)  # first pixel of its run
    run = torch.cumsum(start, 0, dtype=idx) - 1  # run id per foreground pixel, increasing with the rank
    last = flat_nonzero(torch.cat([start[1:], start.new_ones(1)]))  # rank of each run's last pixel
    first_pos = pos.index_select(0, flat_nonzero(start))  # flat position of each run's first pixel
    run_map = torch.full((BHW + W,), -1, dtype=idx, device=pos.device)  # padded below
    run_map[pos] = run
    below = pos + W
    below_run = run_map.index_select(0, below)
    edge = (below_run >= 0) & (below < (image + 1) * (H * W))  # a foreground pixel below, same image
    edge &= flat.index_select(0, below.clamp_max(BHW - 1)) == lab  # ... of the same label
    edge &= start | (first_pos.index_select(0, below_run.clamp_min(0)) == below)  # ... at a run start
    e = flat_nonzero(edge)
    a, b = run.index_select(0, e), below_run.index_select(0, e)
    ab, ba = torch.cat([a, b]), torch.cat([b, a])
    parent = torch.arange(len(first_pos), device=pos.device)
    for _ in range(max_iter or len(first_pos)):
        pab = parent.index_select(0, ab)
        if not bool((pab[:len(a)] != pab[len(a):]).any()):
            break
        # hook both ends' parents under the larger of the two (parents only grow, within the component)
        parent = parent.scatter_reduce(0, pab, parent.index_select(0, ba), "amax")
        parent = parent.index_select(0, parent.index_select(0, parent))  # pointer jumping
    while True:  # flatten: every run points to its root, the component's last run
        nxt = parent.index_select(0, parent)
        if torch.equal(nxt, parent):
            break
        parent = nxt
    return last.index_select(0, parent.index_select(0, run)) + 1


def predicted_instances(out: dict[str, Tensor], min_pixels: int | None = None) -> dict[str, Tensor]:
    """Instances from the predicted mask (see the module docstring). Returns flat per-instance tensors:
    ``image`` (K,), ``class_id`` (K,), ``score`` (K,), ``quat`` (K, 4) (canonical for the 6D and 9D
    representations, which also give ``rot`` (K, 3, 3)), ``area`` (K,), the per-pixel
    ``instance_map`` (B, H, W) with values ``0`` (none) or ``1 + instance index``, and the instances' pixels:
    ``pixel`` (P,) flat ``b * H * W + p`` with ``pixel_instance`` (P,) their instance index."""
    logits = out["mask_logits"]
    B, C1, H, W = logits.shape
    min_pixels = max(4, H * W // 512) if min_pixels is None else min_pixels
    HW = H * W
    logits = logits.detach().float()
    # Foreground: background probability below 1/2, i.e. l_0 < logsumexp(l_1..l_C) <= max_c l_c + log C.
    # The soft-max runs only on the pixels that pass this cheap bound (a soft-max or a max over the
    # channel dimension of the whole NCHW map is several times slower on CPU than element-wise maxima).
    if logits.is_contiguous():  # element-wise maxima of channel planes
        top = logits[:, 1]
        for c in range(2, C1):
            top = torch.maximum(top, logits[:, c])
    else:  # channels-last (or other) layouts: planes are strided, a reduction is faster there
        top = logits[:, 1:].amax(1)
    f = flat_nonzero((logits[:, 0] < top + (math.log(C1 - 1) + 1e-3)).reshape(-1))
    image = f // HW
    elements, offset, sk = _pixel_elements(logits, f, image)
    chan = torch.arange(0, C1 * sk, sk, dtype=offset.dtype, device=f.device)[:, None] + offset
    x = elements.index_select(0, chan.reshape(-1)).view(C1, -1)  # (1 + C, candidates)
    best = x[1:].amax(0)  # channel-first: amax over the leading dimension is fast, max(0) and argmax(0) are not;
    # the winning class is the first reaching the maximum (as max(0) picks it): the least c + C1 * [x_c < best]
    d = x[1:] - best  # <= 0, and 0 where the maximum is reached
    key = d.sign().mul_(-C1).add_(torch.arange(C1 - 1.0, device=f.device)[:, None])
    pix_cls = key.amin(0).long()  # (a NaN key needs a NaN or infinite best logit: then s is NaN, not foreground)
    e0, s = (x[0] - best).exp(), d.exp_().sum(0)  # soft-max numerators over exp(best)
    fg = flat_nonzero(e0 < s)  # background probability e0 / (e0 + s) below 1/2
    f, image, pix_cls = f.index_select(0, fg), image.index_select(0, fg), pix_cls.index_select(0, fg)
    conf = (e0 + s).index_select(0, fg).reciprocal()  # soft-max probability of the winning class
    pix_cls += 1  # f: flat foreground pixels b * H * W + p, image: b, pix_cls: class 1..C
    cls = torch.zeros(B * HW, dtype=torch.uint8 if C1 <= 256 else torch.long, device=f.device)
    cls[f] = pix_cls.to(cls.dtype)
    root = _component_ids(cls, f, H, W, image=image) - 1  # component ids are 1 + a foreground rank
    big = torch.bincount(root, minlength=f.numel()) >= min_pixels
    rep = flat_nonzero(big)  # a pixel (the last) of each kept component, in the order of the compact ids
    K = rep.numel()
    image_k, class_k = image.index_select(0, rep), pix_cls.index_select(0, rep)  # shared by the component
    kept = flat_nonzero(big.index_select(0, root))  # pixels of the kept components; the others are dropped
    f, image, pix_cls, conf = (t.index_select(0, kept) for t in (f, image, pix_cls, conf))
    inv = (torch.cumsum(big, 0) - 1).index_select(0, root.index_select(0, kept))  # compact ids 0..K-1
    kind = rotation_kind(out)
    x = class_field_pixels(out[FIELD_KEYS[kind]].detach(), f, pix_cls, image, ROTATION_CHANNELS[kind]).float()
    rot = None
    if kind == "quaternion":
        quat, area_k = aggregate_quaternions(x, inv, K)
    else:  # the evaluation reads quaternions: converted here, the one place (the matrix is kept too)
        rot, area_k = aggregate_rotmats(x, inv, K, kind)
        quat = rotmat_to_quat(rot)
    score = torch.zeros(K, device=logits.device).index_add_(0, inv, conf) / area_k.clamp_min(1)
    instance_map = torch.zeros(B * H * W, dtype=torch.long, device=logits.device)
    instance_map[f] = inv + 1
    det = {"image": image_k, "class_id": class_k, "score": score, "quat": quat, "area": area_k,
           "instance_map": instance_map.view(B, H, W), "pixel": f, "pixel_instance": inv}
    if rot is not None:
        det["rot"] = rot
    return det


def match_instances(pred_map: Tensor, pred_class: Tensor, gt_map: Tensor, gt_class: Tensor,
                    iou_threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Greedy one-to-one matching by 2D mask IoU, same class only.

    ``pred_map`` (B, H, W) holds ``1 + k`` for predicted instance k (K of them, classes ``pred_class`` (K,));
    ``gt_map`` (B, H, W) holds ``1 + g`` for ground-truth instance g (G of them, classes ``gt_class`` (G,)),
    both with ids global over the batch. Returns ``(pred_index, iou)`` per ground truth (G,), ``-1`` and 0
    where unmatched.
    """
    K, G = pred_class.numel(), gt_class.numel()
    joint = torch.bincount(pred_map.reshape(-1) * (G + 1) + gt_map.reshape(-1), minlength=(K + 1) * (G + 1))
    joint = joint.view(K + 1, G + 1)  # pixel counts per (prediction or none, truth or none)
    return _match_by_iou(joint[1:, 1:], joint.sum(1)[1:], joint.sum(0)[1:], pred_class, gt_class, iou_threshold)


def _match_by_iou(inter: Tensor, area_p: Tensor, area_g: Tensor, pred_class: Tensor, gt_class: Tensor,
                  iou_threshold: float) -> tuple[Tensor, Tensor]:
    """``match_instances`` given the pixel counts: ``inter`` (K, G), ``area_p`` (K,) and ``area_g`` (G,)."""
    K, G = pred_class.numel(), gt_class.numel()
    dev = gt_class.device
    if K == 0 or G == 0:
        return torch.full((G,), -1, dtype=torch.long, device=dev), torch.zeros(G, device=dev)
    inter, area_p, area_g = inter.float(), area_p.float(), area_g.float()
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
        M = batch["inst_valid"].shape[1]
        valid = batch["inst_valid"].reshape(-1)
        slots = flat_nonzero(valid)  # the valid slots b * M + k
        # Ground-truth ids over the batch, 1 + the rank of the valid slot b * M + k (0: an invalid slot),
        # on ground-truth foreground pixels, where every intersection and ground-truth area lies.
        remap = torch.cumsum(valid.long(), 0) * valid
        f, _, pixel_slot = _gt_foreground(batch)
        gt_id = remap.index_select(0, pixel_slot)
        gt_class = batch["inst_class"].reshape(-1).index_select(0, slots)
        K, G = pred["class_id"].numel(), gt_class.numel()
        pred_id = pred["instance_map"].reshape(-1).index_select(0, f)
        joint = torch.bincount(pred_id * (G + 1) + gt_id, minlength=(K + 1) * (G + 1)).view(K + 1, G + 1)
        pred_index, iou = _match_by_iou(joint[1:, 1:], pred["area"], joint.sum(0)[1:], pred["class_id"], gt_class,
                                        iou_threshold)
        matched = pred_index >= 0
        safe = pred_index.clamp_min(0)
        zero = torch.zeros((), device=inst.device)
        return {
            "pred_quat": torch.where(matched[:, None], pred["quat"][safe] if pred["quat"].numel() else
                                     torch.zeros(len(safe), 4, device=inst.device), zero),
            "gt_quat": batch["inst_quat"].reshape(-1, 4).index_select(0, slots).float(),
            "class_id": gt_class,
            "score": torch.where(matched, pred["score"][safe] if pred["score"].numel() else
                                 torch.zeros(len(safe), device=inst.device), zero),
            "matched": matched,
            "iou": iou,
            "image": slots // M,
        }
