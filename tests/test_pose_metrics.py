"""Metrics: batches == concatenation, known AP cases, misses, symmetric classes, state sync semantics."""

from __future__ import annotations

import math

import pytest
import torch

from fastpose.pose.metrics import DegreeErrorMeanAP, RotationAccuracy, average_precision, rotation_error_deg
from rotation_utils import axis_angle_to_quat, quat_product, random_quat


def _ev(errors_deg, scores, classes, matched, seed: int = 0) -> dict[str, torch.Tensor]:
    """Synthetic evaluate_batch output with the given per-instance errors (rotations about x)."""
    n = len(errors_deg)
    g = torch.Generator().manual_seed(seed)
    gt = random_quat(n, g)
    # rotate about the object's z axis: a y-axis change of the same angle, so symmetric classes agree
    delta = axis_angle_to_quat(torch.tensor([[0.0, 0.0, 1.0]]).expand(n, 3), torch.deg2rad(torch.tensor(errors_deg)))
    pred = quat_product(gt, delta) * 3.0
    matched = torch.tensor(matched)
    return {"pred_quat": torch.where(matched[:, None], pred, 0.0), "gt_quat": gt,
            "class_id": torch.tensor(classes), "score": torch.tensor(scores) * matched, "matched": matched}


def _random_ev(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"pred_quat": torch.randn(n, 4, generator=g), "gt_quat": random_quat(n, g),
            "class_id": torch.randint(1, 7, (n,), generator=g), "score": torch.rand(n, generator=g),
            "matched": torch.rand(n, generator=g) < 0.8}


def _cat(evs):
    return {k: torch.cat([e[k] for e in evs]) for k in evs[0]}


def test_batches_equal_concatenation() -> None:
    evs = [_random_ev(n, seed) for seed, n in enumerate([7, 1, 30, 0, 12])]
    r1, a1 = RotationAccuracy(), DegreeErrorMeanAP()
    for ev in evs:
        r1.update(ev)
        a1.update(ev)
    r2, a2 = RotationAccuracy(), DegreeErrorMeanAP()
    r2.update(_cat(evs))
    a2.update(_cat(evs))
    for x, y in ((r1.compute(), r2.compute()), (a1.compute(), a2.compute())):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.allclose(x[k], y[k], equal_nan=True), k


def test_merge_state_like_ddp_equals_single_process() -> None:
    """Two 'ranks' merged through torchmetrics' reduction == one process seeing all data."""
    ev_a, ev_b = _random_ev(20, 1), _random_ev(9, 2)
    rank_a, rank_b = RotationAccuracy(), RotationAccuracy()
    rank_a.update(ev_a)
    rank_b.update(ev_b)
    rank_a.merge_state(rank_b)
    single = RotationAccuracy()
    single.update(_cat([ev_a, ev_b]))
    for k, v in single.compute().items():
        assert torch.allclose(rank_a.compute()[k], v), k
    ap_a, ap_b, ap_all = DegreeErrorMeanAP(), DegreeErrorMeanAP(), DegreeErrorMeanAP()
    ap_a.update(ev_a)
    ap_b.update(ev_b)
    ap_a.merge_state(ap_b)
    ap_all.update(_cat([ev_a, ev_b]))
    for k, v in ap_all.compute().items():
        assert torch.allclose(ap_a.compute()[k], v, equal_nan=True), k


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_rotation_accuracy_known_values() -> None:
    r = RotationAccuracy()
    r.update(_ev([1.0, 3.0, 50.0], [1, 1, 1], [3, 3, 6], [True, True, True]))
    r.update(_ev([2.0, 170.0], [1, 1], [5, 5], [True, False]))  # the miss is not averaged in
    out = r.compute()
    assert abs(float(out["rot_err_mean"]) - 14.0) < 1e-3  # (1 + 3 + 50 + 2) / 4
    assert abs(float(out["rot_err_median"]) - 2.5) < 1e-3
    empty = RotationAccuracy().compute()
    assert math.isnan(float(empty["rot_err_mean"])) and math.isnan(float(empty["rot_err_median"]))


def test_known_ap_cases() -> None:
    # all correct, nothing missed: AP 1
    a = DegreeErrorMeanAP(thresholds=(5, 10, 20))
    a.update(_ev([1.0, 2.0, 3.0], [0.9, 0.8, 0.7], [3, 3, 6], [True, True, True]))
    out = a.compute()
    assert out["degree_mAP_5"] == 1 and out["degree_mAP_20"] == 1 and out["miss_rate"] == 0
    assert math.isnan(float(out["degree_AP_5_bottle"]))  # no ground truth: not averaged
    # half the objects missed, the rest correct: AP 0.5
    a = DegreeErrorMeanAP()
    a.update(_ev([1.0, 1.0, 0.0, 0.0], [0.9, 0.8, 0.0, 0.0], [3] * 4, [True, True, False, False]))
    out = a.compute()
    assert torch.isclose(out["degree_mAP_5"], torch.tensor(0.5)) and torch.isclose(out["miss_rate"], torch.tensor(0.5))
    # ranking matters: the confident prediction is wrong (err 30), the other right: AP = 1/2 * 1/2
    a = DegreeErrorMeanAP()
    a.update(_ev([30.0, 1.0], [0.9, 0.5], [6, 6], [True, True]))
    out = a.compute()
    assert torch.isclose(out["degree_mAP_5"], torch.tensor(0.25))
    assert torch.isclose(out["degree_mAP_20"], torch.tensor(0.25)) and out["degree_AP_10_mug"] == out["degree_mAP_10"]
    # the right one ranked first: AP = 1 * 1/2
    a = DegreeErrorMeanAP()
    a.update(_ev([30.0, 1.0], [0.5, 0.9], [6, 6], [True, True]))
    assert torch.isclose(a.compute()["degree_mAP_5"], torch.tensor(0.5))
    # thresholds: 7 degrees passes 10 and 20, not 5; classes average with equal weight
    a = DegreeErrorMeanAP()
    a.update(_ev([7.0, 1.0, 1.0, 1.0], [1, 1, 1, 1], [3, 6, 6, 6], [True] * 4))
    out = a.compute()
    assert torch.isclose(out["degree_mAP_5"], torch.tensor(0.5)) and out["degree_mAP_10"] == 1


def test_average_precision_function() -> None:
    assert average_precision(torch.tensor([True, False, True]), torch.tensor([0.9, 0.8, 0.7]), 4) == \
        pytest.approx((1.0 + 2 / 3) / 4)
    assert average_precision(torch.zeros(0, dtype=torch.bool), torch.zeros(0), 3) == 0
    assert math.isnan(float(average_precision(torch.zeros(0, dtype=torch.bool), torch.zeros(0), 0)))


def test_symmetric_classes_in_metrics() -> None:
    gt = random_quat(4, torch.Generator().manual_seed(3))
    spin = axis_angle_to_quat(torch.tensor([[0.0, 1.0, 0.0]]).expand(4, 3), torch.full((4,), 2.0))
    ev = {"pred_quat": quat_product(gt, spin), "gt_quat": gt, "class_id": torch.tensor([1, 2, 4, 6]),
          "score": torch.ones(4), "matched": torch.ones(4, dtype=torch.bool)}
    err = rotation_error_deg(ev["pred_quat"], ev["gt_quat"], ev["class_id"])
    assert err[:3].max() < 1e-3 and abs(float(err[3]) - 114.59) < 0.01
    a = DegreeErrorMeanAP()
    a.update(ev)
    out = a.compute()
    assert out["degree_AP_5_bottle"] == 1 and out["degree_AP_5_can"] == 1 and out["degree_AP_20_mug"] == 0


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_metrics_empty_compute_is_defined() -> None:
    out = DegreeErrorMeanAP().compute()
    assert out["degree_mAP_5"] == 0 and out["miss_rate"] == 0
