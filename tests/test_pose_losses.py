"""Losses: direction of one gradient step, gradcheck, finiteness, sign invariance, empty batches."""

from __future__ import annotations

import pytest
import torch

import numpy as np
from scipy.spatial.transform import Rotation

from fastpose.config import LOSS_REPRESENTATIONS
from fastpose.errors import FastposeError
from fastpose.pose.aggregate import gt_instance_rotations
from fastpose.pose.losses import (
    LOSSES,
    REPRESENTATIONS,
    build_loss,
    chordal_loss,
    geodesic_loss,
    qloss,
    qloss_neglog,
    rotmat_geodesic_loss,
    sign_mse,
)
from fastpose.pose.metrics import rotation_error_deg
from fastpose.pose.rotations import FIELD_KEYS, ROTATION_CHANNELS, quat_to_rotmat, rot6d_to_rotmat, rot9d_to_rotmat, rotmat_angle
from rotation_utils import axis_angle_to_quat, quat_product, random_quat

CORES = {
    "mse": sign_mse,
    "qloss": qloss,
    "pw-qloss": qloss,
    "geodesic": geodesic_loss,
    "qloss-neglog": qloss_neglog,
}


PAIRS = [(name, kind) for name, kinds in REPRESENTATIONS.items() for kind in kinds]  # every valid pair
MATRIX_CORES = {"geodesic": rotmat_geodesic_loss, "chordal": chordal_loss}


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


def _outputs(kind: str, seed: int = 11, zero: bool = False) -> dict[str, torch.Tensor]:
    shape = (2, 6 * ROTATION_CHANNELS[kind], 8, 8)
    field = torch.zeros(shape) if zero else torch.randn(shape, generator=_gen(seed))
    logits = torch.zeros(2, 7, 8, 8) if zero else torch.randn(2, 7, 8, 8, generator=_gen(seed + 1))
    return {"mask_logits": logits.requires_grad_(), FIELD_KEYS[kind]: field.requires_grad_()}


def _instance_error(out: dict, batch: dict) -> torch.Tensor:
    """Angle (radians) of each ground-truth instance's aggregated matrix (the matrix losses' quantity)."""
    inst = gt_instance_rotations({k: v.detach() for k, v in out.items()}, batch)
    return rotmat_angle(inst["gt"], inst["pred"])


@pytest.mark.parametrize("name,kind", PAIRS)
def test_one_step_on_model_output_moves_error_the_right_way(name: str, kind: str) -> None:
    batch = _toy_batch()
    out = _outputs(kind)
    key = FIELD_KEYS[kind]
    terms = build_loss(name, rotation=kind)(out, batch)
    assert set(terms) == {"loss", "loss_mask", "loss_rot"}
    error = _pixel_error if kind == "quaternion" else _instance_error
    before = error(out, batch).mean()
    terms["loss_rot"].backward()
    field = out[key]
    with torch.no_grad():
        out2 = {"mask_logits": out["mask_logits"], key: field - 0.05 * field.grad / field.grad.abs().max()}
    after = error(out2, batch).mean()
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


@pytest.mark.parametrize("name,kind", PAIRS)
def test_nothing_to_compare_gives_attached_zero(name: str, kind: str) -> None:
    batch = _toy_batch()
    for key in ("class_mask", "instance_mask", "quaternion_map"):
        batch[key] = torch.zeros_like(batch[key])
    batch["inst_valid"][:] = False
    out = _outputs(kind)
    logits, q = out["mask_logits"], out[FIELD_KEYS[kind]]
    terms = build_loss(name, rotation=kind)(out, batch)
    assert terms["loss_rot"].item() == 0.0 and terms["loss_rot"].requires_grad
    terms["loss"].backward()  # no exception, and the mask term still trains
    assert logits.grad.abs().sum() > 0 and torch.equal(q.grad, torch.zeros_like(q))
    assert set(out) == {"mask_logits", FIELD_KEYS[kind]}


@pytest.mark.parametrize("name,kind", PAIRS)
def test_losses_finite_for_zero_predictions(name: str, kind: str) -> None:
    batch = _toy_batch()
    out = _outputs(kind, zero=True)
    terms = build_loss(name, eps=1e-2, mask_weight=0.5, rot_weight=2.0, rotation=kind)(out, batch)
    terms["loss"].backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert torch.isfinite(out[FIELD_KEYS[kind]].grad).all()
    assert torch.allclose(terms["loss"], 0.5 * terms["loss_mask"] + 2.0 * terms["loss_rot"])


def test_registry_unknown_name_and_representation_mismatch() -> None:
    assert set(LOSSES) == {"mse", "qloss", "pw-qloss", "geodesic", "chordal", "qloss-neglog"}
    assert REPRESENTATIONS == LOSS_REPRESENTATIONS  # the torch-free copy the configuration validates with
    with pytest.raises(FastposeError, match="unknown loss 'l2'"):
        build_loss("l2")
    with pytest.raises(FastposeError, match="'qloss' does not fit the 6d .*: geodesic, chordal$"):
        build_loss("qloss", rotation="6d")
    with pytest.raises(FastposeError, match="'chordal' does not fit the quaternion"):
        build_loss("chordal")


def test_run_config_rotation_default_choices_and_fit() -> None:
    from fastpose.config import ConfigError, RunConfig, build_config

    assert RunConfig.from_dict({"model": {"backbone": "resnet18"}}).model.rotation == "quaternion"  # old configs
    assert build_config(updates={"name": "X", "model.rotation": "9d", "loss.name": "chordal"}).model.rotation == "9d"
    with pytest.raises(ConfigError, match="unknown rotation 'euler'; choose one of: quaternion, 6d, 9d"):
        build_config(updates={"name": "X", "model.rotation": "euler"})
    for rotation, loss in [("6d", "mse"), ("9d", "pw-qloss"), ("quaternion", "chordal")]:
        with pytest.raises(ConfigError, match=f"--loss {loss} does not fit --rotation {rotation}"):
            build_config(updates={"name": "X", "model.rotation": rotation, "loss.name": loss})


# ----------------------------------------------------------------------------- matrix losses and projections
def _near(gt_quat: torch.Tensor, angle: float, seed: int) -> torch.Tensor:
    """Matrices at exactly ``angle`` radians from ``gt_quat`` (n, 4), float64, about random axes."""
    n = gt_quat.shape[0]
    turn = axis_angle_to_quat(torch.randn(n, 3, generator=_gen(seed), dtype=torch.float64),
                              torch.full((n,), angle, dtype=torch.float64))
    return quat_to_rotmat(quat_product(gt_quat, turn))


@pytest.mark.parametrize("angle", [0.3, 2.0, 1e-4, np.pi - 1e-4])
def test_matrix_losses_against_scipy(angle: float) -> None:
    gt_q = random_quat(50, _gen(30), dtype=torch.float64)
    gt, pred = quat_to_rotmat(gt_q), _near(gt_q, angle, 31)
    ref = (Rotation.from_matrix(gt.numpy()).inv() * Rotation.from_matrix(pred.numpy())).magnitude()
    geo = rotmat_geodesic_loss(pred, gt, reduction="none").numpy()
    assert np.abs(geo - ref).max() < 2e-6  # the 1e-6 smoothing, nothing else
    chord = chordal_loss(pred, gt, reduction="none").numpy()
    assert np.abs(chord - 8 * np.sin(ref / 2) ** 2).max() < 1e-10


def test_rotmat_angle_accurate_in_float32_where_roma_asin_is_not() -> None:
    import roma

    gt_q = random_quat(500, _gen(32), dtype=torch.float64)
    gt = quat_to_rotmat(gt_q)
    for angle in (1e-5, 1e-3, np.pi - 1e-3, np.pi - 1e-5):
        pred = _near(gt_q, angle, 33)
        ref = (Rotation.from_matrix(gt.numpy()).inv() * Rotation.from_matrix(pred.numpy())).magnitude()
        ours = rotmat_angle(gt.float(), pred.float()).double().numpy()
        assert np.abs(ours - ref).max() < 1e-6, angle
        if angle > 3:  # roma's 2 asin(|B - A| / 2 sqrt 2): the asin is flat near 180 degrees
            theirs = roma.rotmat_geodesic_distance(gt.float(), pred.float()).double().numpy()
            assert np.abs(theirs - ref).max() > 1e-4


def test_gradcheck_matrix_losses_near_identity_and_near_180() -> None:
    gt_q = random_quat(4, _gen(34), dtype=torch.float64)
    gt = quat_to_rotmat(gt_q)
    for angle in (1e-4, 0.7, np.pi - 1e-3):
        pred = _near(gt_q, angle, 35).requires_grad_()
        assert torch.autograd.gradcheck(lambda p: rotmat_geodesic_loss(p, gt, reduction="none"), (pred,))
        assert torch.autograd.gradcheck(lambda p: chordal_loss(p, gt, reduction="none"), (pred,))


@pytest.mark.parametrize("kind", ["6d", "9d"])
def test_gradcheck_through_the_projections(kind: str) -> None:
    """Loss of the projected raw vector (what training differentiates), raw vectors near the identity and
    near 180 degrees from the target, and generic ones."""
    gt_q = random_quat(3, _gen(36), dtype=torch.float64)
    gt = quat_to_rotmat(gt_q)
    to_raw = (lambda R: R[..., :, :2].transpose(-1, -2).reshape(-1, 6)) if kind == "6d" else (lambda R: R.reshape(-1, 9))
    project = rot6d_to_rotmat if kind == "6d" else rot9d_to_rotmat
    noise = 0.1 * torch.randn(3, ROTATION_CHANNELS[kind], generator=_gen(37), dtype=torch.float64)
    for angle in (1e-3, 1.0, np.pi - 1e-2):
        raw = (to_raw(_near(gt_q, angle, 38)) * 1.7 + noise).requires_grad_()
        assert torch.autograd.gradcheck(lambda x: project(x), (raw,))
        assert torch.autograd.gradcheck(lambda x: rotmat_geodesic_loss(project(x), gt, reduction="none"), (raw,))
        assert torch.autograd.gradcheck(lambda x: chordal_loss(project(x), gt, reduction="none"), (raw,))


@pytest.mark.parametrize("kind", ["6d", "9d"])
@pytest.mark.parametrize("core", sorted(MATRIX_CORES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matrix_losses_finite_at_0_and_180_and_zero_vectors(kind: str, core: str, dtype) -> None:
    gt_q = random_quat(8, _gen(39), dtype=torch.float64)
    gt = quat_to_rotmat(gt_q).to(dtype)
    project = rot6d_to_rotmat if kind == "6d" else rot9d_to_rotmat
    to_raw = (lambda R: R[..., :, :2].transpose(-1, -2).reshape(-1, 6)) if kind == "6d" else (lambda R: R.reshape(-1, 9))
    cases = [to_raw(_near(gt_q, a, 40)).to(dtype) for a in (0.0, 1e-7, np.pi)]
    cases += [torch.zeros(8, ROTATION_CHANNELS[kind], dtype=dtype), cases[0] * 1e-20, cases[0] * 1e20]
    for raw in cases:
        raw = raw.clone().requires_grad_()
        value = MATRIX_CORES[core](project(raw), gt)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(raw.grad).all(), (kind, core, raw)


def test_matrix_geodesic_gradient_does_not_vanish_near_180() -> None:
    gt_q = random_quat(16, _gen(41), dtype=torch.float64)
    pred = _near(gt_q, np.pi - 1e-3, 42).requires_grad_()
    rotmat_geodesic_loss(pred, quat_to_rotmat(gt_q), reduction="sum").backward()
    # the angle's gradient in the tangent space has norm 1; as a 3x3 matrix gradient its norm is 1 / sqrt 2
    tangent = pred.transpose(-1, -2) @ pred.grad
    assert ((tangent - tangent.transpose(-1, -2)).norm(dim=(-2, -1)) / 2 > 0.5).all()


def test_qloss_values() -> None:
    gt = torch.tensor([[0.0, 0, 0, 1]])
    assert torch.allclose(qloss(gt, gt, eps=0.01), torch.log(torch.tensor(0.01)))
    assert torch.allclose(qloss_neglog(gt, gt, eps=0.01), -torch.log(torch.tensor(0.01)))
    orth = torch.tensor([[1.0, 0, 0, 0]])  # 180 degrees away
    assert torch.allclose(qloss(orth, gt, eps=0.01), torch.log(torch.tensor(1.01)))
