"""NOCS-standard evaluation: hand-computed cases, and an independent numpy implementation of the NOCS definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from fastpose.pose.evaluation import (
    CRITERIA, DETECTION_IOU, IOU_THRESHOLDS, POSE_THRESHOLDS, ROT_THRESHOLDS, PoseEvaluation, average_precision,
    box_iou_3d, ground_truth, match_detections,
)

S = 16  # image side of the toy scenes


def _rect(m: torch.Tensor, value: int, y0: int, x0: int, h: int, w: int) -> None:
    m[y0:y0 + h, x0:x0 + w] = value


def _scene(gts: list[dict], dets: list[dict], B: int = 1, M: int = 4):
    """A batch of ``B`` images with ground truths ``gts`` and detections ``dets`` (dicts with image, cls, quat,
    trans, size, rect=(y0, x0, h, w) and, for detections, score)."""
    batch = {"inst_valid": torch.zeros(B, M, dtype=torch.bool), "inst_class": torch.zeros(B, M, dtype=torch.long),
             "inst_quat": torch.zeros(B, M, 4), "inst_trans": torch.zeros(B, M, 3), "inst_size": torch.zeros(B, M, 3),
             "inst_handle_visible": torch.ones(B, M, dtype=torch.bool),
             "instance_mask": torch.zeros(B, S, S, dtype=torch.long)}
    slot = [0] * B
    for g in gts:
        b, k = g["image"], slot[g["image"]]
        slot[b] += 1
        batch["inst_valid"][b, k], batch["inst_class"][b, k] = True, g["cls"]
        batch["inst_quat"][b, k] = torch.tensor(g["quat"], dtype=torch.float32)
        batch["inst_trans"][b, k] = torch.tensor(g["trans"], dtype=torch.float32)
        batch["inst_size"][b, k] = torch.tensor(g["size"], dtype=torch.float32)
        batch["inst_handle_visible"][b, k] = g.get("handle", True)
        _rect(batch["instance_mask"][b], k + 1, *g["rect"])
    imap = torch.zeros(B, S, S, dtype=torch.long)
    for i, d in enumerate(dets):
        _rect(imap[d["image"]], i + 1, *d["rect"])
    det = {"image": torch.tensor([d["image"] for d in dets], dtype=torch.long),
           "class_id": torch.tensor([d["cls"] for d in dets], dtype=torch.long),
           "score": torch.tensor([d["score"] for d in dets], dtype=torch.float32),
           "quat": torch.tensor([d["quat"] for d in dets], dtype=torch.float32).view(-1, 4),
           "trans": torch.tensor([d["trans"] for d in dets], dtype=torch.float32).view(-1, 3),
           "size": torch.tensor([d["size"] for d in dets], dtype=torch.float32).view(-1, 3),
           "instance_map": imap}
    return det, batch


ID = (0.0, 0.0, 0.0, 1.0)
GT = dict(image=0, cls=3, quat=ID, trans=(0.0, 0.0, 0.6), size=(0.1, 0.06, 0.04), rect=(2, 2, 6, 6))


def _evaluate(det, batch) -> dict[str, float]:
    m = PoseEvaluation()
    m.update(det, batch)
    return {k: float(v) for k, v in m.compute().items()}


def test_one_ground_truth_two_detections_the_better_one_ranked_first() -> None:
    good = dict(GT, score=0.9)
    far = dict(GT, score=0.8, trans=(0.3, 0.0, 0.6), rect=(9, 9, 6, 6))  # elsewhere: a false positive
    out = _evaluate(*_scene([GT], [good, far]))
    # ranked: TP (P=1, R=1), FP (P=1/2, R=1): AP = 1
    assert out["iou_50"] == 1 and out["10deg_5cm"] == 1 and out["10deg"] == 1
    assert out["false_positive_rate"] == 0.5 and out["miss_rate"] == 0
    assert out["rot_err_median"] < 1e-3 and out["trans_err_median_cm"] < 1e-4


def test_one_ground_truth_two_detections_the_worse_one_ranked_first() -> None:
    good = dict(GT, score=0.8)
    far = dict(GT, score=0.9, trans=(0.3, 0.0, 0.6), rect=(9, 9, 6, 6))
    out = _evaluate(*_scene([GT], [good, far]))
    # ranked: FP (P=0), TP (P=1/2, R=1): AP = 1/2; DegreeErrorMeanAP, which ignored the false positive, said 1
    for name in ("iou_25", "iou_75", "5deg_2cm", "10deg_10cm", "5deg", "20deg"):
        assert out[name] == pytest.approx(0.5), name
    assert out["10deg_5cm/camera"] == pytest.approx(0.5) and math.isnan(out["10deg_5cm/mug"])


def test_a_duplicate_is_a_false_positive() -> None:
    first = dict(GT, score=0.9, rect=(2, 2, 6, 3))  # the object split in two detections, both IoU 1/2
    second = dict(GT, score=0.7, rect=(2, 5, 6, 3))
    det, batch = _scene([GT], [first, second])
    m = match_detections(det, ground_truth(batch))
    assert m["tp"][:, CRITERIA.index("iou_50")].tolist() == [True, False]
    assert m["tp"][:, CRITERIA.index("det")].tolist() == [True, False]
    out = _evaluate(det, batch)
    assert out["false_positive_rate"] == 0.5 and out["iou_50"] == 1 and out["miss_rate"] == 0
    # a higher-scored duplicate takes the object; the better-scored copy ranks first and the AP stays 1
    gt2 = dict(GT, image=0, trans=(0.3, 0.0, 0.6), rect=(9, 9, 6, 6))
    out = _evaluate(*_scene([GT, gt2], [first, second]))  # two objects, two detections of one: recall 1/2
    assert out["iou_50"] == pytest.approx(0.5) and out["miss_rate"] == 0.5


def test_a_zero_quaternion_is_a_miss_not_zero_degrees() -> None:
    det, batch = _scene([GT], [dict(GT, score=0.9, quat=(0.0, 0.0, 0.0, 0.0))])
    out = _evaluate(det, batch)
    assert out["5deg"] == 0 and out["10deg_10cm"] == 0 and out["iou_25"] == 0
    assert out["miss_rate"] == 0 and out["rot_err_median"] == 180  # detected (mask), but no rotation


def _about_y(deg: float) -> tuple[float, ...]:
    return tuple(Rotation.from_euler("y", deg, degrees=True).as_quat())


@pytest.mark.parametrize("cls,handle,symmetric", [(1, True, True), (4, True, True), (3, True, False),
                                                  (6, True, False), (6, False, True)])
def test_symmetric_box_turned_about_y(cls: int, handle: bool, symmetric: bool) -> None:
    gt = dict(GT, cls=cls, size=(0.12, 0.05, 0.04), handle=handle)
    det, batch = _scene([gt], [dict(gt, score=0.9, quat=_about_y(90))])  # 90 = 5 NOCS steps of 18 degrees
    m = match_detections(det, ground_truth(batch))
    iou = float(m["iou_3d"][0, 0])
    rot = float(m["rot_err"][0, 0])
    if symmetric:
        assert iou == pytest.approx(1.0) and rot < 1e-3
    else:  # the axis-aligned boxes (0.12 x 0.04 vs 0.04 x 0.12 in x, z): IoU = 0.04^2 / (2 * 0.12 * 0.04 - 0.04^2)
        assert iou == pytest.approx(0.04 * 0.04 / (2 * 0.12 * 0.04 - 0.04 ** 2), rel=1e-4)
        assert rot == pytest.approx(90, abs=1e-3)


def test_ties_do_not_depend_on_order() -> None:
    a = average_precision(torch.tensor([True, False]), torch.tensor([0.5, 0.5]), 1)
    b = average_precision(torch.tensor([False, True]), torch.tensor([0.5, 0.5]), 1)
    assert a == b == pytest.approx(0.5)
    assert math.isnan(float(average_precision(torch.zeros(0, dtype=torch.bool), torch.zeros(0), 0)))
    assert float(average_precision(torch.zeros(0, dtype=torch.bool), torch.zeros(0), 3)) == 0


# ----------------------------------------------------------------------------------- independent reference
def _np_rotation_error(q_pred, q_gt, cls, handle) -> float:
    if np.linalg.norm(q_pred) < 1e-6:
        return math.nan
    R1, R2 = Rotation.from_quat(q_pred).as_matrix(), Rotation.from_quat(q_gt).as_matrix()
    if cls in (1, 2, 4) or (cls == 6 and not handle):
        y1, y2 = R1 @ np.array([0, 1.0, 0]), R2 @ np.array([0, 1.0, 0])
        return math.degrees(math.acos(np.clip(y1 @ y2 / np.linalg.norm(y1) / np.linalg.norm(y2), -1, 1)))
    return math.degrees(math.acos(np.clip((np.trace(R1 @ R2.T) - 1) / 2, -1, 1)))


def _np_box(R, t, size):
    corners = np.array([[x, y, z] for x in (-.5, .5) for y in (-.5, .5) for z in (-.5, .5)]) * size
    pts = corners @ R.T + t
    return pts.min(0), pts.max(0)


def _np_iou_3d(q1, t1, s1, q2, t2, s2, symmetric) -> float:
    if np.linalg.norm(q1) < 1e-6:
        return 0.0
    R1, R2 = Rotation.from_quat(q1).as_matrix(), Rotation.from_quat(q2).as_matrix()

    def iou(R):
        lo1, hi1 = _np_box(R, t1, s1)
        lo2, hi2 = _np_box(R2, t2, s2)
        d = np.minimum(hi1, hi2) - np.maximum(lo1, lo2)
        inter = np.prod(d) if d.min() > 0 else 0.0
        return inter / (np.prod(hi1 - lo1) + np.prod(hi2 - lo2) - inter)

    if not symmetric:
        return iou(R1)
    return max(iou(R1 @ Rotation.from_euler("y", 2 * math.pi * i / 20).as_matrix()) for i in range(20))


def _np_ap(tp, scores, n_gt) -> float:
    """compute_ap_from_matches_scores, with distinct scores (as the random data has)."""
    if n_gt == 0:
        return math.nan
    order = np.argsort(-np.asarray(scores))
    tp = np.asarray(tp, bool)[order]
    precisions = np.concatenate([[0], np.cumsum(tp) / (np.arange(len(tp)) + 1), [0]])
    recalls = np.concatenate([[0], np.cumsum(tp) / n_gt, [1]])
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = max(precisions[i], precisions[i + 1])
    idx = np.where(recalls[:-1] != recalls[1:])[0] + 1
    return float(np.sum((recalls[idx] - recalls[idx - 1]) * precisions[idx]))


def _np_evaluate(gts, dets, gt_maps, det_maps) -> dict[str, float]:
    """The NOCS loops, written out: per image, predictions by score; IoU matches scan gts by IoU and stop at
    the threshold; pose matches scan gts by degrees + cm and skip those over it."""
    tps = {c: [] for c in CRITERIA}
    for b in range(len(gt_maps)):
        gi = [i for i, g in enumerate(gts) if g["image"] == b]
        di = sorted([i for i, d in enumerate(dets) if d["image"] == b], key=lambda i: -dets[i]["score"])
        iou2 = np.zeros((len(di), len(gi)))
        for a, i in enumerate(di):
            for c, j in enumerate(gi):
                p, g = det_maps[b] == i + 1, gt_maps[b] == gi.index(j) + 1
                iou2[a, c] = (p & g).sum() / max((p | g).sum(), 1)
        err = np.full((len(di), len(gi), 2), np.inf)
        iou3 = np.zeros((len(di), len(gi)))
        for a, i in enumerate(di):
            for c, j in enumerate(gi):
                d, g = dets[i], gts[j]
                sym = g["cls"] in (1, 2, 4) or (g["cls"] == 6 and not g["handle"])
                err[a, c, 0] = _np_rotation_error(d["quat"], g["quat"], g["cls"], g["handle"])
                err[a, c, 1] = 100 * np.linalg.norm(np.subtract(d["trans"], g["trans"]))
                iou3[a, c] = _np_iou_3d(d["quat"], d["trans"], d["size"], g["quat"], g["trans"], g["size"], sym)
        err = np.nan_to_num(err, nan=np.inf)
        cls_d = [dets[i]["cls"] for i in di]
        cls_g = [gts[j]["cls"] for j in gi]

        def by_overlap(ov, thr, extra=None):
            matched, out = set(), []
            for a in range(len(di)):
                hit = False
                for c in np.argsort(-ov[a], kind="stable"):
                    if c in matched:
                        continue
                    if ov[a, c] < thr:
                        break
                    if cls_d[a] != cls_g[c] or (extra is not None and not extra(a, c)):
                        continue
                    matched.add(c)
                    hit = True
                    break
                out.append(hit)
            return out

        def by_cost(cost, ok):
            matched, out = set(), []
            for a in range(len(di)):
                hit = False
                for c in np.argsort(cost[a], kind="stable"):
                    if c in matched or cls_d[a] != cls_g[c] or not ok(a, c):
                        continue
                    matched.add(c)
                    hit = True
                    break
                out.append(hit)
            return out

        for t, name in zip(IOU_THRESHOLDS, CRITERIA):
            tps[name] += by_overlap(iou3, t)
        for (dg, cm), name in zip(POSE_THRESHOLDS, CRITERIA[3:]):
            tps[name] += by_cost(err.sum(-1), lambda a, c: err[a, c, 0] <= dg and err[a, c, 1] <= cm)
        for dg, name in zip(ROT_THRESHOLDS, CRITERIA[8:]):
            tps[name] += by_cost(err[..., 0], lambda a, c: err[a, c, 0] <= dg and iou2[a, c] >= DETECTION_IOU)
        tps["det"] += by_overlap(iou2, DETECTION_IOU)
    scores = [dets[i]["score"] for b in range(len(gt_maps))
              for i in sorted([i for i, d in enumerate(dets) if d["image"] == b], key=lambda i: -dets[i]["score"])]
    classes = [dets[i]["cls"] for b in range(len(gt_maps))
               for i in sorted([i for i, d in enumerate(dets) if d["image"] == b], key=lambda i: -dets[i]["score"])]
    out = {}
    for name in CRITERIA[:-1]:
        aps = []
        for c in range(1, 7):
            n_gt = sum(g["cls"] == c for g in gts)
            sel = [k for k, cc in enumerate(classes) if cc == c]
            ap = _np_ap([tps[name][k] for k in sel], [scores[k] for k in sel], n_gt)
            out[f"{name}/{c}"] = ap
            aps.append(ap)
        out[name] = float(np.nanmean(aps))
    out["false_positive_rate"] = 1 - np.mean(tps["det"])
    return out


def _random_scene(seed: int, B: int = 4):
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    quadrants = [(0, 0), (0, 8), (8, 0), (8, 8)]
    for b in range(B):
        for q in rng.permutation(4)[: rng.integers(1, 4)]:
            y, x = quadrants[q]
            cls = int(rng.choice([1, 3, 6]))
            quat = Rotation.random(random_state=rng.integers(1 << 30)).as_quat()
            g = dict(image=b, cls=cls, quat=tuple(quat), trans=tuple(rng.uniform(-0.2, 0.2, 3) + [0, 0, 0.6]),
                     size=tuple(rng.uniform(0.04, 0.15, 3)), handle=bool(rng.random() < 0.5),
                     rect=(y + 1, x + 1, 6, 6))
            gts.append(g)
            for _ in range(rng.integers(0, 3)):  # 0-2 detections per object: misses and duplicates
                noise = Rotation.from_rotvec(rng.normal(0, math.radians(rng.choice([2, 6, 30])), 3))
                dq = (noise * Rotation.from_quat(quat)).as_quat()
                dy, dx = rng.integers(-1, 2, 2)
                sd = float(rng.choice([0.003, 0.01, 0.03]))
                dets.append(dict(image=b, cls=cls if rng.random() < 0.85 else 4, score=float(rng.random()),
                                 quat=tuple(dq), trans=tuple(np.add(g["trans"], rng.normal(0, sd, 3))),
                                 size=tuple(np.multiply(g["size"], rng.uniform(1 - sd, 1 + sd, 3) + 5 * sd)),
                                 rect=(y + 1 + dy, x + 1 + dx, int(rng.integers(4, 8)), int(rng.integers(4, 8)))))
        if rng.random() < 0.5:  # a spurious detection on the background
            dets.append(dict(image=b, cls=int(rng.choice([1, 3, 6])), score=float(rng.random()), quat=ID,
                             trans=(0.0, 0.0, 0.6), size=(0.1, 0.1, 0.1), rect=(7, 7, 2, 2)))
    return gts, dets


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_an_independent_numpy_implementation(seed: int) -> None:
    gts, dets = _random_scene(seed)
    det, batch = _scene(gts, dets, B=4)
    ours = _evaluate(det, batch)
    gt_maps = [batch["instance_mask"][b].numpy() for b in range(4)]
    ref = _np_evaluate(gts, dets, gt_maps, [det["instance_map"][b].numpy() for b in range(4)])
    names = {1: "bottle", 3: "camera", 6: "mug"}
    for name in CRITERIA[:-1]:
        assert ours[name] == pytest.approx(ref[name], abs=1e-6), name
        for c, cname in names.items():
            a, r = ours[f"{name}/{cname}"], ref[f"{name}/{c}"]
            assert (math.isnan(a) and math.isnan(r)) or a == pytest.approx(r, abs=1e-6), (name, cname)
    assert ours["false_positive_rate"] == pytest.approx(ref["false_positive_rate"])


def test_any_batching_and_ddp_merge_equal_one_pass() -> None:
    gts, dets = _random_scene(11, B=4)
    det, batch = _scene(gts, dets, B=4)
    whole = PoseEvaluation()
    whole.update(det, batch)
    expected = whole.compute()

    def part(images):  # the sub-batch of the given images, in that order
        keep = torch.isin(det["image"], torch.tensor(images))
        idx = torch.nonzero(keep).squeeze(1)
        remap = torch.zeros(len(det["image"]) + 1, dtype=torch.long)
        remap[idx + 1] = torch.arange(1, len(idx) + 1)
        sub_det = {k: det[k][idx] for k in ("class_id", "score", "quat", "trans", "size")}
        sub_det["image"] = torch.tensor([images.index(int(i)) for i in det["image"][idx]], dtype=torch.long)
        sub_det["instance_map"] = remap[det["instance_map"][images]]
        return sub_det, {k: v[images] for k, v in batch.items()}

    one, two = PoseEvaluation(), PoseEvaluation()
    one.update(*part([3, 1]))
    two.update(*part([2]))
    two.update(*part([0]))
    one.merge_state(two)  # what DDP's reduction does with cat/sum states
    got = one.compute()
    assert got.keys() == expected.keys()
    for k in expected:
        assert torch.allclose(got[k], expected[k], equal_nan=True), k


def test_box_iou_3d_against_numpy() -> None:
    rng = np.random.default_rng(3)
    q1, q2 = Rotation.random(50, random_state=1).as_quat(), Rotation.random(50, random_state=2).as_quat()
    t1, t2 = rng.normal(0, 0.05, (50, 3)), rng.normal(0, 0.05, (50, 3))
    s1, s2 = rng.uniform(0.05, 0.2, (50, 3)), rng.uniform(0.05, 0.2, (50, 3))
    sym = rng.random(50) < 0.5
    R = lambda q: torch.from_numpy(Rotation.from_quat(q).as_matrix())  # noqa: E731
    ours = box_iou_3d(R(q1), torch.from_numpy(t1), torch.from_numpy(s1), R(q2), torch.from_numpy(t2),
                      torch.from_numpy(s2), torch.from_numpy(sym))
    ref = [_np_iou_3d(q1[i], t1[i], s1[i], q2[i], t2[i], s2[i], sym[i]) for i in range(50)]
    assert np.allclose(ours.numpy(), ref, atol=1e-9)
    assert (ours > 0).sum() > 10


def test_trivial_baseline_poses_the_detections_at_their_centroid() -> None:
    from fastpose.pose.aggregate import predicted_instances
    from fastpose.pose.evaluation import trivial_baseline

    det, batch = _scene([GT], [dict(GT, score=0.9)])
    logits = torch.zeros(1, 7, S, S)
    logits[:, 0] = 5
    logits[0, 3, 2:8, 2:8] = 10  # the camera's 6x6 square, centroid (5, 5) in continuous coordinates
    pred = predicted_instances({"mask_logits": logits, "quaternion": torch.zeros(1, 24, S, S)}, min_pixels=4)
    K = torch.tensor([[[16.0, 0, 8], [0, 16.0, 8], [0, 0, 1]]])
    depth, size = torch.full((7,), 0.6), torch.full((7, 3), 0.1)
    base = trivial_baseline(pred, K, depth, size)
    assert torch.allclose(base["trans"], torch.tensor([[(5 - 8) / 16 * 0.6, (5 - 8) / 16 * 0.6, 0.6]]))
    assert torch.equal(base["quat"], torch.tensor([[0.0, 0, 0, 1]])) and torch.allclose(base["size"], size[3:4])


def test_a_model_that_finds_nothing_is_never_best() -> None:
    from fastpose.config import ConfigError, RunConfig
    from fastpose.metrics import DEFAULT_MONITOR, direction, is_better

    det, batch = _scene([GT], [dict(GT, score=0.9, quat=_about_y(8))])
    nothing = {k: v[:0] for k, v in det.items() if k != "instance_map"}
    nothing["instance_map"] = torch.zeros_like(det["instance_map"])
    name = DEFAULT_MONITOR.split("/", 1)[1]
    empty, found = _evaluate(nothing, batch), _evaluate(det, batch)
    assert empty[name] == 0 and found[name] == 1 and empty["miss_rate"] == 1
    assert math.isnan(empty["rot_err_median"])  # the old monitor: NaN, or flattering on a few matches
    assert direction(DEFAULT_MONITOR) == "max" and not is_better(DEFAULT_MONITOR, empty[name], found[name])
    assert RunConfig().train.monitor == DEFAULT_MONITOR
    with pytest.raises(ConfigError, match="--monitor"):
        RunConfig(name="X").override({"train.monitor": "rot_err"}).validate()
