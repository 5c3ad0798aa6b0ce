"""Rotation maths and the rotation error: agreement with scipy, invariances, stability."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import roma

from fastpose.pose.metrics import rotation_error_deg
from fastpose.pose.rotations import (
    FIELD_KEYS,
    canonical,
    quat_angle,
    quat_angle_naive,
    quat_to_rotmat,
    rot6d_to_rotmat,
    rot9d_to_rotmat,
    rotation_kind,
    rotmat_angle,
    rotmat_to_quat,
    safe_normalize,
)
from rotation_utils import axis_angle_to_quat, quat_product, random_quat


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


def test_quat_angle_at_least_as_accurate_as_roma_in_float32() -> None:
    """Why ``quat_angle`` keeps its atan2 form: float32 error against scipy's float64, near 0 and 180 degrees."""
    g = _gen(7)
    gt = random_quat(2000, g, dtype=torch.float64)
    for angle in (1e-5, 1e-3, np.pi - 1e-3, np.pi - 1e-5):
        pred = _perturb(gt, torch.full((2000,), angle, dtype=torch.float64), g)
        ref = scipy_error_deg(pred.numpy(), gt.numpy())
        ours = np.degrees(quat_angle(pred.float(), gt.float()).double().numpy())
        theirs = np.degrees(roma.unitquat_geodesic_distance(pred.float(), gt.float()).double().numpy())
        assert np.abs(ours - ref).max() < 2e-5 and np.abs(ours - ref).max() <= np.abs(theirs - ref).max() * 1.5


def test_quat_to_rotmat_normalises_raw_quaternions() -> None:
    q = random_quat(64, _gen(8), dtype=torch.float64)
    scale = torch.rand(64, 1, generator=_gen(9), dtype=torch.float64) * 10 + 0.01
    ref = Rotation.from_quat(q.numpy()).as_matrix()
    assert np.abs(quat_to_rotmat(-scale * q).numpy() - ref).max() < 1e-12
    assert torch.equal(quat_to_rotmat(torch.zeros(2, 4)), torch.zeros(2, 3, 3))


def _np_gram_schmidt(x: np.ndarray) -> np.ndarray:
    """Independent reference: Zhou et al.'s map of one 6D vector (a1, a2) to a rotation (numpy, float64)."""
    a1, a2 = x[:3], x[3:]
    b1 = a1 / np.linalg.norm(a1)
    b2 = a2 - (b1 @ a2) * b1
    b2 = b2 / np.linalg.norm(b2)
    return np.stack([b1, b2, np.cross(b1, b2)], axis=1)


def _np_svd_rotation(m: np.ndarray) -> np.ndarray:
    """Independent reference: the rotation nearest a 3x3 matrix, U diag(1, 1, det(U V^T)) V^T (numpy)."""
    u, _, vt = np.linalg.svd(m)
    return u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_6d_and_9d_projections_match_numpy_references(dtype: torch.dtype) -> None:
    g = _gen(10)
    x6 = torch.randn(4, 5, 6, generator=g, dtype=torch.float64)
    x9 = torch.randn(4, 5, 9, generator=g, dtype=torch.float64)
    x9[0, 0] = -torch.eye(3, dtype=torch.float64).reshape(9)  # det -1: the fix flips the smallest direction
    R6, R9 = rot6d_to_rotmat(x6.to(dtype)), rot9d_to_rotmat(x9.to(dtype))
    assert R6.shape == R9.shape == (4, 5, 3, 3) and R6.dtype == R9.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    ref6 = np.stack([_np_gram_schmidt(v) for v in x6.reshape(-1, 6).numpy()])
    ref9 = np.stack([_np_svd_rotation(m) for m in x9.reshape(-1, 3, 3).numpy()])
    assert np.abs(R6.reshape(-1, 3, 3).double().numpy() - ref6).max() < tol
    assert np.abs(R9.reshape(-1, 3, 3).double().numpy()[1:] - ref9[1:]).max() < tol
    for R in (R6, R9):  # proper rotations
        R = R.double()
        assert torch.allclose(R.transpose(-1, -2) @ R, torch.eye(3, dtype=torch.float64).expand_as(R), atol=tol)
        assert torch.allclose(torch.linalg.det(R), torch.ones(4, 5, dtype=torch.float64), atol=tol)
    # -I (det -1) has no unique nearest rotation (every half-turn is at the same distance): any half-turn will do
    assert abs(float(torch.linalg.det(R9[0, 0].double())) - 1) < tol
    assert abs(float(torch.diagonal(R9[0, 0].double()).sum()) + 1) < tol  # trace -1: a half-turn
    # a rotation's own representation comes back unchanged, whatever its scale
    R = quat_to_rotmat(random_quat(32, g, dtype=torch.float64))
    assert torch.allclose(rot6d_to_rotmat(3 * R[..., :2].transpose(-1, -2).reshape(32, 6)), R, atol=1e-12)
    assert torch.allclose(rot9d_to_rotmat(3 * R.reshape(32, 9)), R, atol=1e-12)


def test_rotmat_angle_matches_scipy_everywhere() -> None:
    g = _gen(11)
    a, b = (quat_to_rotmat(random_quat(2000, g, dtype=torch.float64)) for _ in range(2))
    ref = (Rotation.from_matrix(a.numpy()).inv() * Rotation.from_matrix(b.numpy())).magnitude()
    assert np.abs(rotmat_angle(a, b).numpy() - ref).max() < 1e-12
    assert float(rotmat_angle(a, a).abs().max()) < 1e-7


def test_rotation_kind_reads_the_field_key() -> None:
    for kind, key in FIELD_KEYS.items():
        assert rotation_kind({"mask_logits": torch.zeros(1), key: torch.zeros(1)}) == kind
    with pytest.raises(KeyError):
        rotation_kind({"mask_logits": torch.zeros(1)})


def test_safe_normalize_zero_vector_has_finite_gradient() -> None:
    q = torch.zeros(3, 4, requires_grad=True)
    out = safe_normalize(q)
    out.sum().backward()
    assert torch.equal(out, torch.zeros(3, 4)) and torch.isfinite(q.grad).all()
