"""Rotations as scalar-last unit quaternions ``(x, y, z, w)``, the convention of scipy and roma.

Every function takes any number of leading batch dimensions: quaternions are ``(..., 4)``, rotation
matrices ``(..., 3, 3)``, vectors ``(..., 3)``. A quaternion ``q`` and ``-q`` are the same rotation;
``canonical`` picks the representative with ``w >= 0`` (the ground-truth convention).

The geodesic angle is computed as ``2 * atan2(|v|, |w|)`` of the relative quaternion ``r = conj(a) * b``,
which is accurate near 0 and near 180 degrees, unlike ``2 * acos(clamp(|<a, b>|))`` (kept as
``quat_angle_naive`` for tests), whose derivative is infinite at 0 and which loses half the digits there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_NORM_EPS = 1e-8


def safe_normalize(q: Tensor, eps: float = _NORM_EPS) -> Tensor:
    """``q / max(|q|, eps)`` along the last dimension; a zero vector stays zero, gradients stay finite.

    The clamp is on the squared norm, so the backward pass never divides by zero (``torch.norm`` of a zero
    vector has an undefined derivative).
    """
    sq = (q * q).sum(dim=-1, keepdim=True)
    return q / torch.sqrt(sq.clamp_min(eps * eps))


def canonical(q: Tensor) -> Tensor:
    """The representative of ``q`` (..., 4) with ``w >= 0`` (``w == 0``: first non-zero of x, y, z positive)."""
    x, y, z, w = q.unbind(-1)
    flip = (w < 0) | ((w == 0) & ((x < 0) | ((x == 0) & ((y < 0) | ((y == 0) & (z < 0))))))
    return torch.where(flip.unsqueeze(-1), -q, q)


def quat_conjugate(q: Tensor) -> Tensor:
    """Conjugate ``(-x, -y, -z, w)``: the inverse rotation for a unit quaternion. (..., 4) -> (..., 4)."""
    return torch.cat([-q[..., :3], q[..., 3:]], dim=-1)


def quat_product(p: Tensor, q: Tensor) -> Tensor:
    """Hamilton product ``p * q`` (..., 4) x (..., 4) -> (..., 4): rotate by ``q`` first, then by ``p``."""
    pv, pw = p[..., :3], p[..., 3:]
    qv, qw = q[..., :3], q[..., 3:]
    v = pw * qv + qw * pv + torch.cross(pv, qv, dim=-1)
    w = pw * qw - (pv * qv).sum(dim=-1, keepdim=True)
    return torch.cat([v, w], dim=-1)


def quat_to_rotmat(q: Tensor) -> Tensor:
    """Rotation matrix (..., 3, 3) of a quaternion (..., 4); ``q`` is normalised first (zero -> identity-ish 0)."""
    q = safe_normalize(q)
    x, y, z, w = q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz, wx, wy, wz = x * y, x * z, y * z, w * x, w * y, w * z
    rows = [
        1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
        2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
        2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
    ]
    return torch.stack(rows, dim=-1).reshape(q.shape[:-1] + (3, 3))


def rotmat_to_quat(R: Tensor) -> Tensor:
    """Unit quaternion (..., 4), canonical ``w >= 0``, of a rotation matrix (..., 3, 3).

    Shepperd's method: of the four candidate formulas it uses the one with the largest pivot, so it is
    accurate for every rotation (including 180 degrees), not only near the identity.
    """
    m = R
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    # 4 * (w^2, x^2, y^2, z^2) candidates; pick the largest.
    cands = torch.stack([1 + trace, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    best = cands.argmax(dim=-1, keepdim=True)
    s = torch.sqrt(cands.gather(-1, best).clamp_min(1e-12)).squeeze(-1) * 2  # 4 * (largest component)
    m21_m12, m02_m20, m10_m01 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    m21p12, m02p20, m10p01 = m[..., 2, 1] + m[..., 1, 2], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1]
    q_w = torch.stack([m21_m12 / s, m02_m20 / s, m10_m01 / s, s / 4], dim=-1)
    q_x = torch.stack([s / 4, m10p01 / s, m02p20 / s, m21_m12 / s], dim=-1)
    q_y = torch.stack([m10p01 / s, s / 4, m21p12 / s, m02_m20 / s], dim=-1)
    q_z = torch.stack([m02p20 / s, m21p12 / s, s / 4, m10_m01 / s], dim=-1)
    allq = torch.stack([q_w, q_x, q_y, q_z], dim=-2)  # (..., 4 candidates, 4)
    q = allq.gather(-2, best.unsqueeze(-1).expand(best.shape[:-1] + (1, 4))).squeeze(-2)
    return canonical(safe_normalize(q))


def quat_rotate(q: Tensor, v: Tensor) -> Tensor:
    """Rotate vectors ``v`` (..., 3) by unit quaternions ``q`` (..., 4)."""
    qv, qw = q[..., :3], q[..., 3:]
    t = 2 * torch.cross(qv, v, dim=-1)
    return v + qw * t + torch.cross(qv, t, dim=-1)


def axis_angle_to_quat(axis: Tensor, angle: Tensor) -> Tensor:
    """Quaternion (..., 4) of a rotation by ``angle`` (...) radians about ``axis`` (..., 3) (normalised here)."""
    axis = safe_normalize(axis)
    half = (angle / 2).unsqueeze(-1)
    return torch.cat([axis * torch.sin(half), torch.cos(half)], dim=-1)


def random_quat(n: int | tuple[int, ...], generator: torch.Generator | None = None,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniformly distributed rotations (Shoemake 1992, "Uniform random rotations"), canonical, shape (n..., 4)."""
    shape = (n,) if isinstance(n, int) else tuple(n)
    u1, u2, u3 = torch.rand((3,) + shape, generator=generator, dtype=torch.float64)
    a, b = torch.sqrt(1 - u1), torch.sqrt(u1)
    q = torch.stack([a * torch.sin(2 * math.pi * u2), a * torch.cos(2 * math.pi * u2),
                     b * torch.sin(2 * math.pi * u3), b * torch.cos(2 * math.pi * u3)], dim=-1)
    return canonical(q).to(dtype)


def quat_angle(a: Tensor, b: Tensor) -> Tensor:
    """Geodesic angle in radians, in [0, pi], between rotations ``a`` and ``b`` (..., 4); sign-invariant.

    Both inputs are normalised. Computed as ``2 * atan2(|v|, |w|)`` with ``(v, w) = conj(a) * b``: stable
    in value near 0 and near pi. (Its derivative at exactly 0 is that of a norm; losses use a smoothed form.)
    """
    r = quat_product(quat_conjugate(safe_normalize(a)), safe_normalize(b))
    return 2 * torch.atan2(torch.linalg.vector_norm(r[..., :3], dim=-1), r[..., 3].abs())


def quat_angle_naive(a: Tensor, b: Tensor) -> Tensor:
    """Reference: ``2 * acos(clamp(|<a, b>|, 0, 1))`` (radians). Loses precision near 0; tests only."""
    d = (safe_normalize(a) * safe_normalize(b)).sum(-1).abs().clamp(0, 1)
    return 2 * torch.acos(d)


def vector_angle(a: Tensor, b: Tensor) -> Tensor:
    """Angle in radians, in [0, pi], between vectors (..., 3): ``atan2(|a x b|, a . b)``, stable everywhere."""
    return torch.atan2(torch.linalg.vector_norm(torch.cross(a, b, dim=-1), dim=-1), (a * b).sum(-1))


def quat_average_naive(q: Tensor) -> Tensor:
    """Reference for tests: Markley's average of quaternions (n, 4) = top eigenvector of ``sum q q^T``."""
    q = safe_normalize(q)
    _, vecs = torch.linalg.eigh(q.transpose(0, 1) @ q)
    return canonical(vecs[:, -1])
