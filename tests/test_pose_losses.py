"""Losses: direction of one gradient step, gradcheck, finiteness, sign invariance, empty batches."""

from __future__ import annotations

import pytest
import torch

from fastpose.errors import FastposeError
from fastpose.pose.losses import LOSSES, build_loss, geodesic_loss, qloss, qloss_neglog, sign_mse
from fastpose.pose.metrics import rotation_error_deg
from fastpose.pose.rotations import axis_angle_to_quat, quat_product, random_quat

CORES = {
    "mse": sign_mse,
    "qloss": qloss,
    "pw-qloss": qloss,
    "geodesic": geodesic_loss,
    "qloss-neglog": qloss_neglog,
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _toy_batch(B: int = 2, H: int = 8, W: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two 4x4 instances per image (classes 3 and 6), random poses."""
    g = _gen(seed)
    inst = torch.zeros(B, H, W, dtype=torch.long)
    inst[:, :4, :4], inst[:, 4:, 4:] = 1, 2
    cls_of = torch.tensor([0, 3, 6])
    quat = random_quat((B, 2), g)
    qmap = torch.zeros(B, 4, H, W)
    for k in range(2):
        qmap += (inst == k + 1)[:, None] * quat[:, k, :, None, None]
    return {
        "class_mask": cls_of[inst], "instance_mask": inst, "quaternion_map": qmap,
        "inst_valid": torch.ones(B, 2, dtype=torch.bool), "inst_class": torch.tensor([[3, 6]] * B),
        "inst_quat": quat,
    }


def _pixel_error(out: dict, batch: dict) -> torch.Tensor:
    """Per-pixel error of the ground-truth class's field on the foreground (for step-direction checks)."""
    from fastpose.pose.losses import _foreground_pixels

    pred, gt = _foreground_pixels(out, batch)
    return rotation_error_deg(pred.detach(), gt)


@pytest.mark.parametrize("name", sorted(CORES))
def test_one_step_on_random_pairs_lowers_error_except_neglog(name: str) -> None:
    g = _gen(10)
    gt = random_quat(1000, g, dtype=torch.float64)
    pred = torch.randn(1000, 4, generator=g, dtype=torch.float64).requires_grad_()
    before = rotation_error_deg(pred.detach(), gt)
    core = CORES[name]
    core(pred, gt, reduction="sum").backward()
    with torch.no_grad():
        stepped = pred - 1e-3 * pred.grad / pred.grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    after = rotation_error_deg(stepped, gt)
    moved = (before > 0.5) & (before < 179.5)  # exactly 0 or 180 are stationary points
    if name == "qloss-neglog":
        assert (after[moved] > before[moved]).float().mean() > 0.99
    else:
        assert (after[moved] < before[moved]).float().mean() > 0.99


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_one_step_on_model_output_moves_error_the_right_way(name: str) -> None:
    batch = _toy_batch()
    q = torch.randn(2, 24, 8, 8, generator=_gen(11), requires_grad=True)
    logits = torch.randn(2, 7, 8, 8, generator=_gen(12), requires_grad=True)
    out = {"mask_logits": logits, "quaternion": q}
    terms = build_loss(name)(out, batch)
    assert set(terms) == {"loss", "loss_mask", "loss_rot"}
    before = _pixel_error(out, batch).mean()
    terms["loss_rot"].backward()
    with torch.no_grad():
        out2 = {"mask_logits": logits, "quaternion": q - 0.05 * q.grad / q.grad.abs().max()}
    after = _pixel_error(out2, batch).mean()
    assert (after > before) if name == "qloss-neglog" else (after < before)


def test_gradcheck_functional_cores() -> None:
    g = _gen(13)
    pred = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    gt = random_quat(6, g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: qloss(p, gt, reduction="none"), (pred,))
    assert torch.autograd.gradcheck(lambda p: geodesic_loss(p, gt, reduction="none"), (pred,))
    assert torch.autograd.gradcheck(lambda p: sign_mse(p, gt, reduction="none"), (pred,))
    assert torch.autograd.gradcheck(lambda p: qloss_neglog(p, gt, reduction="none"), (pred,))


@pytest.mark.parametrize("core", [qloss, geodesic_loss, sign_mse, qloss_neglog])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_gradients_at_0_and_180_degrees_and_zero_vectors(core, dtype) -> None:
    g = _gen(14)
    gt = random_quat(8, g, dtype=dtype)
    half_turn = axis_angle_to_quat(torch.randn(8, 3, generator=g, dtype=dtype), torch.full((8,), torch.pi, dtype=dtype))
    tiny = axis_angle_to_quat(torch.randn(8, 3, generator=g, dtype=dtype), torch.full((8,), 1e-7, dtype=dtype))
    cases = [gt.clone(), -gt, quat_product(gt, half_turn), quat_product(gt, tiny), torch.zeros(8, 4, dtype=dtype),
             gt * 1e-30, gt * 1e30]
    for pred in cases:
        pred = pred.clone().requires_grad_()
        value = core(pred, gt)
        value.backward()
        assert torch.isfinite(value), (core.__name__, pred)
        assert torch.isfinite(pred.grad).all(), (core.__name__, pred)


def test_geodesic_gradient_does_not_vanish_near_180() -> None:
    gt = random_quat(16, _gen(15), dtype=torch.float64)
    near = axis_angle_to_quat(torch.randn(16, 3, generator=_gen(16), dtype=torch.float64),
                              torch.full((16,), torch.pi - 1e-3, dtype=torch.float64))
    pred = quat_product(gt, near).requires_grad_()
    geodesic_loss(pred, gt, reduction="sum").backward()
    assert (pred.grad.norm(dim=-1) > 1.0).all()


@pytest.mark.parametrize("core", [qloss, geodesic_loss, sign_mse])
def test_sign_and_scale_invariance(core) -> None:
    g = _gen(17)
    gt = random_quat(32, g)
    pred = torch.randn(32, 4, generator=g)
    ref = core(pred, gt, reduction="none")
    assert torch.allclose(core(-pred, gt, reduction="none"), ref, atol=1e-6)
    assert torch.allclose(core(pred, -gt, reduction="none"), ref, atol=1e-6)
    assert torch.allclose(core(7.5 * pred, gt, reduction="none"), ref, atol=1e-5)


def test_geodesic_loss_is_the_angle() -> None:
    g = _gen(18)
    gt, pred = random_quat(100, g, dtype=torch.float64), random_quat(100, g, dtype=torch.float64)
    angle = torch.deg2rad(rotation_error_deg(pred, gt))
    assert torch.allclose(geodesic_loss(pred, gt, reduction="none"), angle, atol=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_nothing_to_compare_gives_attached_zero(name: str) -> None:
    batch = _toy_batch()
    for key in ("class_mask", "instance_mask", "quaternion_map"):
        batch[key] = torch.zeros_like(batch[key])
    batch["inst_valid"][:] = False
    q = torch.randn(2, 24, 8, 8, requires_grad=True)
    logits = torch.randn(2, 7, 8, 8, requires_grad=True)
    terms = build_loss(name)(out := {"mask_logits": logits, "quaternion": q}, batch)
    assert terms["loss_rot"].item() == 0.0 and terms["loss_rot"].requires_grad
    terms["loss"].backward()  # no exception, and the mask term still trains
    assert logits.grad.abs().sum() > 0 and torch.equal(q.grad, torch.zeros_like(q))
    assert set(out) == {"mask_logits", "quaternion"}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_finite_for_zero_predictions(name: str) -> None:
    batch = _toy_batch()
    q = torch.zeros(2, 24, 8, 8, requires_grad=True)
    logits = torch.zeros(2, 7, 8, 8, requires_grad=True)
    terms = build_loss(name, eps=1e-2, mask_weight=0.5, rot_weight=2.0)({"mask_logits": logits, "quaternion": q}, batch)
    terms["loss"].backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert torch.isfinite(q.grad).all()
    assert torch.allclose(terms["loss"], 0.5 * terms["loss_mask"] + 2.0 * terms["loss_rot"])


def test_registry_and_unknown_name() -> None:
    assert set(LOSSES) == {"mse", "qloss", "pw-qloss", "geodesic", "qloss-neglog"}
    with pytest.raises(FastposeError, match="unknown loss 'l2'"):
        build_loss("l2")


def test_qloss_values() -> None:
    gt = torch.tensor([[0.0, 0, 0, 1]])
    assert torch.allclose(qloss(gt, gt, eps=0.01), torch.log(torch.tensor(0.01)))
    assert torch.allclose(qloss_neglog(gt, gt, eps=0.01), -torch.log(torch.tensor(0.01)))
    orth = torch.tensor([[1.0, 0, 0, 0]])  # 180 degrees away
    assert torch.allclose(qloss(orth, gt, eps=0.01), torch.log(torch.tensor(1.01)))
