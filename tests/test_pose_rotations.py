"""Rotation maths and the rotation error: agreement with scipy, invariances, stability."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from fastpose.pose.metrics import rotation_error_deg
from fastpose.pose.rotations import (
    axis_angle_to_quat,
    canonical,
    quat_angle,
    quat_angle_naive,
    quat_conjugate,
    quat_product,
    quat_rotate,
    quat_to_rotmat,
    random_quat,
    rotmat_to_quat,
    safe_normalize,
)


def scipy_error_deg(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Magnitude of the relative rotation, in float64, by scipy."""
    return np.degrees((Rotation.from_quat(gt).inv() * Rotation.from_quat(pred)).magnitude())


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _perturb(q: torch.Tensor, angle_rad: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    axis = torch.randn(q.shape[0], 3, generator=g, dtype=q.dtype)
    return quat_product(q, axis_angle_to_quat(axis, angle_rad))


@pytest.mark.parametrize("case", ["random", "near_identical", "near_opposite", "unnormalised", "sign_flipped"])
def test_rotation_error_matches_scipy(case: str) -> None:
    g = _gen(1)
    gt = random_quat(2000, g, dtype=torch.float64)
    if case == "random":
        pred = random_quat(2000, g, dtype=torch.float64)
    elif case == "near_identical":
        pred = _perturb(gt, torch.rand(2000, generator=g, dtype=torch.float64) * 1e-4, g)
    elif case == "near_opposite":
        pred = _perturb(gt, torch.pi - torch.rand(2000, generator=g, dtype=torch.float64) * 1e-4, g)
    elif case == "unnormalised":
        scale = torch.rand(2000, 1, generator=g, dtype=torch.float64) * 50 + 1e-3
        pred = random_quat(2000, g, dtype=torch.float64) * scale
    else:
        pred = -_perturb(gt, torch.rand(2000, generator=g, dtype=torch.float64) * torch.pi, g)
    ours = rotation_error_deg(pred, gt)
    ref = scipy_error_deg(safe_normalize(pred).numpy(), gt.numpy())
    assert ours.dtype == torch.float64
    assert np.abs(ours.numpy() - ref).max() < 1e-3
    assert float(ours.min()) >= 0 and float(ours.max()) <= 180


def test_rotation_error_float32_close_and_in_range() -> None:
    g = _gen(2)
    gt, pred = random_quat(500, g), random_quat(500, g) * 3
    ours = rotation_error_deg(pred, gt)
    ref = scipy_error_deg(safe_normalize(pred.double()).numpy(), gt.double().numpy())
    assert ours.dtype == torch.float32
    assert np.abs(ours.numpy() - ref).max() < 0.05
    assert rotation_error_deg(gt, gt).max() < 0.05  # float32 identity: ~0, not ~0.03 degrees as acos gives


def test_stable_angle_beats_naive_near_zero() -> None:
    g = _gen(3)
    gt = random_quat(200, g, dtype=torch.float64)
    angle = torch.full((200,), 1e-5, dtype=torch.float64)
    pred = _perturb(gt, angle, g)
    assert torch.allclose(quat_angle(pred.float(), gt.float()).double(), angle, rtol=0.05, atol=1e-7)
    # the acos reference loses it all in float32 (this is why it is not used)
    assert (quat_angle_naive(pred.float(), gt.float()).double() - angle).abs().max() > 1e-4


def test_symmetric_classes_use_the_y_axis() -> None:
    g = _gen(4)
    gt = random_quat(100, g, dtype=torch.float64)
    spin = axis_angle_to_quat(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(100, 3),
                              torch.rand(100, generator=g, dtype=torch.float64) * 6)
    pred = quat_product(gt, spin)  # rotated about the object's own y axis only
    for cls, symmetric in [(1, True), (2, True), (3, False), (4, True), (5, False), (6, False)]:
        err = rotation_error_deg(pred, gt, torch.full((100,), cls))
        if symmetric:
            assert err.max() < 1e-4
        else:
            assert torch.allclose(err, rotation_error_deg(pred, gt))
    # a tilt of the y axis by 30 degrees is 30 degrees for a bottle
    tilt = axis_angle_to_quat(torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64), torch.tensor([np.pi / 6]))
    err = rotation_error_deg(quat_product(gt[:1], tilt), gt[:1], torch.tensor([1]))
    assert abs(float(err) - 30) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matrix_quaternion_round_trip_and_scipy(dtype: torch.dtype) -> None:
    q = random_quat((7, 5), _gen(5), dtype=dtype)
    R = quat_to_rotmat(q)
    assert R.shape == (7, 5, 3, 3)
    ref = Rotation.from_quat(q.reshape(-1, 4).double().numpy()).as_matrix()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert np.abs(R.reshape(-1, 3, 3).double().numpy() - ref).max() < tol
    q2 = rotmat_to_quat(R)
    assert torch.allclose(q2, canonical(q), atol=10 * tol)
    # 180-degree rotations (w = 0) survive the round trip too
    half_turn = axis_angle_to_quat(torch.randn(50, 3, generator=_gen(6), dtype=dtype),
                                   torch.full((50,), np.pi, dtype=dtype))
    assert rotation_error_deg(rotmat_to_quat(quat_to_rotmat(half_turn)), half_turn).max() < 1e-2


def test_product_rotate_conjugate() -> None:
    g = _gen(7)
    p, q = random_quat(64, g, dtype=torch.float64), random_quat(64, g, dtype=torch.float64)
    v = torch.randn(64, 3, generator=g, dtype=torch.float64)
    # composition: R(p q) = R(p) R(q), as scipy's (p * q)
    assert torch.allclose(quat_to_rotmat(quat_product(p, q)), quat_to_rotmat(p) @ quat_to_rotmat(q), atol=1e-12)
    ref = (Rotation.from_quat(p.numpy()) * Rotation.from_quat(q.numpy())).as_quat()
    assert np.abs(canonical(quat_product(p, q)).numpy() - canonical(torch.from_numpy(ref)).numpy()).max() < 1e-12
    assert torch.allclose(quat_rotate(p, v), (quat_to_rotmat(p) @ v[..., None])[..., 0], atol=1e-12)
    ident = quat_product(quat_conjugate(p), p)
    assert torch.allclose(ident, torch.tensor([0.0, 0, 0, 1], dtype=torch.float64).expand(64, 4), atol=1e-12)


def test_random_quat_uniform_and_seeded() -> None:
    a, b = random_quat(20000, _gen(8)), random_quat(20000, _gen(8))
    assert torch.equal(a, b)
    assert (a[:, 3] >= 0).all() and torch.allclose(a.norm(dim=-1), torch.ones(20000), atol=1e-5)
    # uniform rotations: the angle's density is (1 - cos t) / pi, mean pi/2 + 2/pi
    mean_angle = quat_angle(a, torch.tensor([0.0, 0, 0, 1]).expand_as(a)).mean()
    assert abs(float(mean_angle) - (np.pi / 2 + 2 / np.pi)) < 0.02


def test_safe_normalize_zero_vector_has_finite_gradient() -> None:
    q = torch.zeros(3, 4, requires_grad=True)
    out = safe_normalize(q)
    out.sum().backward()
    assert torch.equal(out, torch.zeros(3, 4)) and torch.isfinite(q.grad).all()
