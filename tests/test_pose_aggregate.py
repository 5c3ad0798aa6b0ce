"""Aggregation, connected components, matching and evaluate_batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from fastpose.pose.aggregate import (
    aggregate_quaternions,
    aggregate_rotmats,
    connected_components,
    evaluate_batch,
    gt_instance_quaternions,
    gt_instance_rotations,
    match_instances,
    predicted_instances,
)
from fastpose.pose.metrics import rotation_error_deg
from fastpose.pose.evaluation import PoseEvaluation, detect
from fastpose.pose.rotations import quat_average_naive, quat_to_rotmat, rot6d_to_rotmat, rot9d_to_rotmat, rotmat_angle
from rotation_utils import axis_angle_to_quat, quat_product, random_quat


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _perfect_output(batch: dict, num_classes: int = 6, noise: float = 0.0, seed: int = 0) -> dict:
    logits = torch.nn.functional.one_hot(batch["class_mask"], num_classes + 1).permute(0, 3, 1, 2).float() * 10
    q = batch["quaternion_map"].repeat(1, num_classes, 1, 1)
    if noise:
        q = q + noise * torch.randn(q.shape, generator=_gen(seed))
    return {"mask_logits": logits, "quaternion": q}


def test_half_pixels_negated_still_average_to_q() -> None:
    g = _gen(0)
    q = random_quat(5, g)
    pix = q.repeat_interleave(200, 0)
    small = axis_angle_to_quat(torch.randn(1000, 3, generator=g), torch.rand(1000, generator=g) * 0.02)
    pix = quat_product(pix, small) * (torch.rand(1000, 1, generator=g) * 3 + 0.1)  # noisy and unnormalised
    pix[::2] = -pix[::2]  # half the pixels say -q
    group = torch.arange(5).repeat_interleave(200)
    mean, count = aggregate_quaternions(pix, group, 5)
    assert torch.equal(count, torch.full((5,), 200))
    assert rotation_error_deg(mean, q).max() < 0.5
    naive_mean = torch.zeros(5, 4).index_add_(0, group, pix)  # q and -q cancel in a plain mean
    assert naive_mean.norm(dim=-1).max() < 0.5 * 200


def test_aggregate_matches_markley_and_handles_empty_groups() -> None:
    g = _gen(1)
    pix = random_quat(60, g)
    group = torch.randint(0, 4, (60,), generator=g)
    mean, count = aggregate_quaternions(pix * torch.where(torch.rand(60, 1, generator=g) < 0.5, -1.0, 1.0),
                                        group, 6)
    assert torch.equal(count[4:], torch.zeros(2, dtype=torch.long))
    assert torch.equal(mean[4:], torch.zeros(2, 4))
    assert torch.allclose(mean.norm(dim=-1)[:4], torch.ones(4), atol=1e-5)
    # tight clusters: sign-aligned mean == Markley's eigenvector average
    centre = random_quat(4, g)
    tight = quat_product(centre[group], axis_angle_to_quat(torch.randn(60, 3, generator=g), torch.full((60,), 0.05)))
    mean, _ = aggregate_quaternions(tight, group, 4)
    for k in range(4):
        assert rotation_error_deg(mean[k:k + 1], quat_average_naive(tight[group == k])[None]) < 0.05


def test_aggregate_gradient_flows_through_mean() -> None:
    pix = random_quat(30, _gen(2)).requires_grad_()
    mean, _ = aggregate_quaternions(pix, torch.zeros(30, dtype=torch.long), 1)
    mean[0, 0].backward()
    assert torch.isfinite(pix.grad).all() and pix.grad.abs().sum() > 0


def _raw(R: torch.Tensor, kind: str) -> torch.Tensor:
    """The raw network vector (..., 6 | 9) that represents rotation matrices ``R`` (..., 3, 3)."""
    return R[..., :, :2].transpose(-1, -2).flatten(-2) if kind == "6d" else R.flatten(-2)


def _matrix_output(batch: dict, kind: str, noise: float = 0.0, seed: int = 0) -> dict:
    """A perfect mask and, in every class's field, the pixel's true rotation (scaled, plus noise)."""
    logits = _perfect_output(batch)["mask_logits"]
    R = quat_to_rotmat(batch["quaternion_map"].permute(0, 2, 3, 1))  # (B, H, W, 3, 3); background: zero
    field = (2.5 * _raw(R, kind)).permute(0, 3, 1, 2).repeat(1, 6, 1, 1)
    if noise:
        field = field + noise * torch.randn(field.shape, generator=_gen(seed))
    return {"mask_logits": logits, "rot6d" if kind == "6d" else "rot9d": field}


@pytest.mark.parametrize("kind", ["6d", "9d"])
def test_aggregate_rotmats_matches_a_per_instance_reference(kind: str) -> None:
    """Vectorised (index_add) aggregation = a plain loop: mean of the raw vectors, then the projection."""
    g = _gen(20)
    width = 6 if kind == "6d" else 9
    x = torch.randn(300, width, generator=g, dtype=torch.float64)
    group = torch.randint(0, 7, (300,), generator=g)
    group[group == 5] = 6  # group 5 stays empty
    R, count = aggregate_rotmats(x, group, 8, kind)
    project = rot6d_to_rotmat if kind == "6d" else rot9d_to_rotmat
    assert R.shape == (8, 3, 3) and count.tolist() == [int((group == k).sum()) for k in range(8)]
    for k in range(8):
        if count[k]:
            assert torch.allclose(R[k], project(x[group == k].mean(0)), atol=1e-10)
    # no sign trouble: noisy pixels around one rotation (which a quaternion head could report as q or -q)
    truth = quat_to_rotmat(random_quat(5, g, dtype=torch.float64))
    group = torch.arange(5).repeat_interleave(100)
    pix = 3 * _raw(truth, kind)[group] + 0.3 * torch.randn(500, width, generator=g, dtype=torch.float64)
    R, _ = aggregate_rotmats(pix, group, 5, kind)
    assert rotmat_angle(R, truth).max() < np.radians(3)


@pytest.mark.parametrize("kind", ["6d", "9d"])
def test_matrix_fields_through_training_and_evaluation_paths(synthetic_batch, kind: str) -> None:
    batch = synthetic_batch
    n = int(batch["inst_valid"].sum())
    out = _matrix_output(batch, kind, noise=0.2)
    inst = gt_instance_rotations(out, batch)
    assert inst["pred"].shape == (n, 3, 3) and inst["gt"].shape == (n, 3, 3)
    assert rotmat_angle(inst["pred"], inst["gt"]).max() < np.radians(3)
    # each pixel reads its own class's field: garbage elsewhere changes nothing
    noisy = {k: v.clone() for k, v in out.items()}
    key = "rot6d" if kind == "6d" else "rot9d"
    width = 6 if kind == "6d" else 9
    own = torch.zeros_like(noisy[key], dtype=torch.bool)
    for c in range(1, 7):
        own[:, width * (c - 1):width * c] = (batch["class_mask"] == c)[:, None]
    noisy[key] = torch.where(own, noisy[key], torch.randn(noisy[key].shape, generator=_gen(21)) * 50)
    assert torch.allclose(gt_instance_rotations(noisy, batch)["pred"], inst["pred"], atol=1e-5)
    # evaluation: detections carry the same rotation as a matrix and as a canonical quaternion
    det = predicted_instances(out)
    assert det["rot"].shape == (len(det["class_id"]), 3, 3) and (det["quat"][:, 3] >= 0).all()
    assert torch.allclose(quat_to_rotmat(det["quat"]), det["rot"], atol=1e-5)
    ev = evaluate_batch(out, batch)
    gt_class, image = ev["class_id"], ev["image"]
    same_class_pair = ((gt_class[:, None] == gt_class[None]) & (image[:, None] == image[None])).sum(1) > 1
    m = ev["matched"] & ~same_class_pair  # (touching objects of one class merge into one instance)
    assert ev["matched"].float().mean() > 0.9
    assert rotation_error_deg(ev["pred_quat"][m], ev["gt_quat"][m], ev["class_id"][m]).max() < 3
    metric = PoseEvaluation()
    metric.update(detect(out, batch["intrinsics"]), batch)
    values = metric.compute()
    assert float(values["rot_err_median"]) < 3 and float(values["10deg"]) > 0.8


def test_connected_components_agree_with_scipy() -> None:
    g = _gen(3)
    labels = (torch.rand(4, 40, 40, generator=g) * 3).long()  # 0 background, classes 1, 2
    labels = torch.nn.functional.max_pool2d(labels[:, None].float(), 3, 1, 1)[:, 0].long()  # blobs
    labels[0, 5:30, 20] = 0  # a wall
    comp = connected_components(labels)
    for b in range(4):
        ours = comp[b].numpy()
        for c in (1, 2):
            ref, n = ndimage.label(labels[b].numpy() == c)  # 4-connectivity
            for k in range(1, n + 1):
                ids = np.unique(ours[ref == k])
                assert len(ids) == 1 and ids[0] > 0
            assert len(np.unique(ours[labels[b].numpy() == c])) == n
    assert (comp[labels == 0] == 0).all()


def test_same_class_objects_apart_are_separate_instances() -> None:
    logits = torch.full((1, 7, 16, 16), -10.0)
    logits[0, 0] = 10
    logits[0, 0, 2:6, 2:6], logits[0, 6, 2:6, 2:6] = -10, 10  # mug
    logits[0, 0, 10:14, 9:15], logits[0, 6, 10:14, 9:15] = -10, 10  # another mug
    q = torch.zeros(1, 24, 16, 16)
    q[0, 23] = 1  # identity in the mug field
    pred = predicted_instances({"mask_logits": logits, "quaternion": q}, min_pixels=4)
    assert pred["class_id"].tolist() == [6, 6]
    assert sorted(pred["area"].tolist()) == [16, 24]
    assert torch.allclose(pred["score"], torch.ones(2), atol=1e-6)


def test_matching_is_greedy_one_to_one_and_class_aware() -> None:
    gt_map = torch.zeros(1, 10, 10, dtype=torch.long)
    gt_map[0, :, :5], gt_map[0, :, 5:] = 1, 2
    pred_map = torch.zeros(1, 10, 10, dtype=torch.long)
    pred_map[0, :, :4] = 1  # IoU 0.8 with gt 1
    pred_map[0, :, 4:6] = 2  # IoU 1/6 with gt 1 and with gt 2
    pred_map[0, :, 6:] = 3  # IoU 0.8 with gt 2, but class mismatch
    idx, iou = match_instances(pred_map, torch.tensor([1, 1, 2]), gt_map, torch.tensor([1, 1]), iou_threshold=0.1)
    assert idx.tolist() == [0, 1] and torch.allclose(iou, torch.tensor([0.8, 1 / 6]))
    idx, _ = match_instances(pred_map, torch.tensor([1, 1, 1]), gt_map, torch.tensor([1, 1]), iou_threshold=0.5)
    assert idx.tolist() == [0, 2]
    idx, _ = match_instances(pred_map, torch.tensor([1, 1, 1]), gt_map, torch.tensor([1, 1]), iou_threshold=0.9)
    assert idx.tolist() == [-1, -1]


def test_evaluate_batch_perfect_and_empty_predictions(synthetic_batch) -> None:
    batch = synthetic_batch
    ev = evaluate_batch(_perfect_output(batch, noise=0.05), batch)
    n = int(batch["inst_valid"].sum())
    assert set(ev) >= {"pred_quat", "gt_quat", "class_id", "score", "matched"}
    assert ev["pred_quat"].shape == (n, 4) and ev["matched"].shape == (n,)
    # every object is found, except where two objects of one class touch (they form one mask component)
    gt_class, image = ev["class_id"], ev["image"]
    same_class_pair = ((gt_class[:, None] == gt_class[None]) & (image[:, None] == image[None])).sum(1) > 1
    assert ev["matched"][~same_class_pair].all() and ev["matched"].float().mean() > 0.9
    assert torch.equal(ev["class_id"], batch["inst_class"][batch["inst_valid"]])
    m = ev["matched"] & ~same_class_pair  # (a merged pair averages two rotations)
    assert rotation_error_deg(ev["pred_quat"][m], ev["gt_quat"][m], gt_class[m]).max() < 3
    # all background: every object is a miss, nothing crashes
    bg = {"mask_logits": torch.zeros_like(_perfect_output(batch)["mask_logits"]),
          "quaternion": torch.zeros(batch["image"].shape[0], 24, *batch["image"].shape[-2:])}
    bg["mask_logits"][:, 0] = 5
    ev = evaluate_batch(bg, batch)
    assert not ev["matched"].any() and ev["score"].eq(0).all() and ev["pred_quat"].eq(0).all()


def test_gt_instance_quaternions_uses_gt_class_field(synthetic_batch) -> None:
    batch = synthetic_batch
    out = _perfect_output(batch)
    out["quaternion"] = torch.randn(out["quaternion"].shape, generator=_gen(4))
    B, _, H, W = out["quaternion"].shape
    cm = batch["class_mask"]
    for c in range(1, 7):  # write the truth only into each pixel's own class field
        sel = (cm == c)[:, None]
        field = out["quaternion"][:, 4 * (c - 1):4 * c]
        out["quaternion"][:, 4 * (c - 1):4 * c] = torch.where(sel, -batch["quaternion_map"], field)
    inst = gt_instance_quaternions(out, batch)
    assert len(inst["pred"]) == int(batch["inst_valid"].sum())
    assert rotation_error_deg(inst["pred"], inst["gt"]).max() < 1e-2


@pytest.mark.parametrize("iou_threshold", [0.5])
def test_evaluate_batch_with_a_noisy_mask(synthetic_batch, iou_threshold: float) -> None:
    batch = synthetic_batch
    out = _perfect_output(batch)
    out["mask_logits"] = out["mask_logits"] + 8 * torch.randn(out["mask_logits"].shape, generator=_gen(5))
    ev = evaluate_batch(out, batch, iou_threshold=iou_threshold)
    assert ev["matched"].float().mean() < 1.0  # speckle breaks instances; still well-formed output
    assert torch.isfinite(ev["pred_quat"]).all() and ((ev["score"] >= 0) & (ev["score"] <= 1)).all()


def _components_reference(labels: torch.Tensor) -> torch.Tensor:
    """scipy's 4-connected labelling per image and class, with the documented ids: 1 + the largest
    foreground rank (flat order over the batch) in the component."""
    flat = labels.reshape(-1)
    rank = torch.full_like(flat, -1)
    rank[flat > 0] = torch.arange(int((flat > 0).sum()))
    rank = rank.view(labels.shape)
    out = torch.zeros_like(labels)
    for b in range(labels.shape[0]):
        for c in labels[b].unique().tolist():
            if c == 0:
                continue
            ref, n = ndimage.label(labels[b].numpy() == c)
            for k in range(1, n + 1):
                m = torch.from_numpy(ref == k)
                out[b][m] = int(rank[b][m].max()) + 1
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_connected_components_ids_match_reference_across_rows_and_images(seed: int) -> None:
    g = _gen(seed)
    labels = (torch.rand(3, 12, 9, generator=g) * 4).long()  # speckle: many runs, classes touching
    labels = torch.where(torch.rand(3, 12, 9, generator=g) < 0.3, 0, labels)
    labels[0, -1, :], labels[1, 0, :] = 2, 2  # a run on the last row of one image and the first of the next
    labels[1, 3, -1], labels[1, 4, 0] = 3, 3  # row ends: flat neighbours, not image neighbours
    assert torch.equal(connected_components(labels), _components_reference(labels))
    assert connected_components(torch.zeros(2, 4, 4, dtype=torch.long)).eq(0).all()


def test_predicted_instances_do_not_depend_on_memory_layout(synthetic_batch) -> None:
    out = _perfect_output(synthetic_batch, noise=0.1)
    out["mask_logits"] = out["mask_logits"] + 4 * torch.randn(out["mask_logits"].shape, generator=_gen(6))
    contiguous = {k: v.contiguous() for k, v in out.items()}
    channels_last = {k: v.contiguous(memory_format=torch.channels_last) for k, v in out.items()}
    ref = predicted_instances(contiguous)
    assert len(ref["class_id"]) > 0
    for other in (channels_last, {k: v[:, :, ::1, :] for k, v in channels_last.items()}):
        got = predicted_instances(other)
        for key in ref:
            assert torch.equal(ref[key], got[key]), key
    # foreground and class follow the soft-max: background probability below 1/2, then the best class
    prob = out["mask_logits"].softmax(1)
    fg = prob[:, 0] < 0.5
    assert torch.equal(ref["instance_map"] > 0, fg & (ref["instance_map"] > 0))
    kept = ref["instance_map"] > 0
    cls_map = torch.zeros_like(ref["instance_map"])
    cls_map[kept] = ref["class_id"][ref["instance_map"][kept] - 1]
    assert torch.equal(cls_map[kept], prob[:, 1:].argmax(1)[kept] + 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_aggregate_same_with_and_without_gradient(dtype: torch.dtype) -> None:
    g = _gen(7)
    pix = torch.randn(300, 4, generator=g, dtype=dtype)
    group = torch.randint(0, 9, (300,), generator=g)
    plain, count = aggregate_quaternions(pix, group, 10)
    live = pix.clone().requires_grad_(True)
    with_grad, count_g = aggregate_quaternions(live, group, 10)
    assert plain.dtype == dtype and torch.equal(count, count_g) and int(count[9]) == 0
    torch.testing.assert_close(plain, with_grad.detach())
    with_grad.sum().backward()
    assert torch.isfinite(live.grad).all()


def test_predicted_classes_break_ties_like_argmax_and_skip_non_finite_logits() -> None:
    logits = torch.full((1, 4, 4, 8), 1.0)  # background + 3 classes, 4 x 8 pixels
    logits[0, 0] = -5.0
    logits[0, 1, :, :4] = -float("inf")  # left half: class 1 impossible, classes 2 and 3 tie: class 2
    logits[0, 3, 0, 4:] = float("nan")  # right half, row 0: a NaN class logit
    logits[0, 1, 1, 4:] = float("inf")  # row 1: an infinite class logit
    logits[0, 0, 2, 4:] = float("inf")  # row 2: certain background
    quat = torch.zeros(1, 12, 4, 8)
    quat[:, 3::4] = 1.0  # identity in every class field
    pred = predicted_instances({"mask_logits": logits, "quaternion": quat}, min_pixels=1)
    assert pred["class_id"].tolist() == [2, 1] and pred["area"].tolist() == [16, 4]  # row 3 of the right: ties
    expected = torch.zeros(4, 8, dtype=torch.long)
    expected[:, :4], expected[3, 4:] = 1, 2
    assert torch.equal(pred["instance_map"][0], expected)
    assert torch.equal(pred["quat"], torch.tensor([[0.0, 0, 0, 1], [0, 0, 0, 1]]))
    ref = predicted_instances({"mask_logits": logits.nan_to_num(nan=0.0, posinf=0.0), "quaternion": quat}, min_pixels=1)
    assert ref["area"].sum() > 20  # the non-finite rows are what removed the others
