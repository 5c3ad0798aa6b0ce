"""Rotations: scalar-last unit quaternions ``(x, y, z, w)`` (the convention of scipy and roma), rotation
matrices, and the 6D and 9D network representations. The maths is roma's (Brégier 2021); this module keeps
only what differs from it in convention, and the angles roma computes less accurately.

Every function takes any number of leading batch dimensions: quaternions are ``(..., 4)``, rotation
matrices ``(..., 3, 3)`` (acting on column vectors, object to camera), vectors ``(..., 3)``.

Conventions that differ from roma's (hence the thin wrappers):

- ``q`` and ``-q`` are the same rotation; ``canonical`` picks the representative with ``w >= 0`` (the
  ground-truth convention). ``rotmat_to_quat`` returns it (roma's ``rotmat_to_unitquat`` may return ``-q``).
- Network outputs are raw: ``quat_to_rotmat`` normalises first (``safe_normalize``: a zero vector stays
  zero with finite gradients; roma's ``quat_normalize`` divides by zero).

Representations (``ROTATION_CHANNELS``; the network head predicts one field of each per class):

==============  =====  ==============================================================================
``quaternion``  4      ``(x, y, z, w)``, normalised; ``q`` and ``-q`` alike (the lab's representation)
``6d``          6      the first two columns ``(a1, a2)`` of the matrix, channels ``a1x a1y a1z a2x a2y
                       a2z``; to SO(3) by Gram-Schmidt (Zhou et al. 2019, ``roma.special_gramschmidt``)
``9d``          9      a 3x3 matrix, row-major (channel ``3 i + j`` is ``M[i, j]``); to SO(3) by the
                       SVD projection with the determinant fix (Levinson et al. 2020,
                       ``roma.special_procrustes``: the rotation nearest ``M`` in Frobenius norm)
==============  =====  ==============================================================================

Angles. ``quat_angle`` is ``2 * atan2(|v|, |w|)`` of the relative quaternion ``r = conj(a) * b`` and
``rotmat_angle`` is ``atan2(|axial(R)|, (tr(R) - 1) / 2)`` of ``R = A^T B`` with ``axial(R)`` the vector of
``(R - R^T) / 2`` (``|axial| = sin theta``). Both are accurate near 0 and near 180 degrees: in float32 the
quaternion form is within 2e-7 rad of scipy's float64 value at both ends where roma's
``unitquat_geodesic_distance`` is within 7e-7 rad, and the matrix form within 4e-7 rad where roma's
``rotmat_geodesic_distance`` (``2 asin(|B - A|_F / (2 sqrt 2))``) is off by 1e-3 rad near 180 degrees
(``tests/test_pose_rotations.py`` measures both). ``2 * acos(clamp(|<a, b>|))`` (kept as
``quat_angle_naive`` for tests) has an infinite derivative at 0 and loses half the digits there.
"""

from __future__ import annotations

import roma
import torch
from torch import Tensor

_NORM_EPS = 1e-8
ROTATION_CHANNELS = {"quaternion": 4, "6d": 6, "9d": 9}  # channels per class of each representation
FIELD_KEYS = {"quaternion": "quaternion", "6d": "rot6d", "9d": "rot9d"}  # the network output holding it


def rotation_kind(out: dict[str, Tensor]) -> str:
    """The representation of network outputs ``out``: the one whose field key (``FIELD_KEYS``) it holds."""
    for kind, key in FIELD_KEYS.items():
        if key in out:
            return kind
    raise KeyError(f"no rotation field in the outputs (keys: {', '.join(out)})")


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


def quat_to_rotmat(q: Tensor) -> Tensor:
    """Rotation matrix (..., 3, 3) of a raw quaternion (..., 4): normalised first (``roma.unitquat_to_rotmat``
    of ``safe_normalize(q)``; a zero quaternion gives the zero matrix)."""
    return roma.unitquat_to_rotmat(safe_normalize(q))


def rotmat_to_quat(R: Tensor) -> Tensor:
    """Canonical (``w >= 0``) unit quaternion (..., 4) of a rotation matrix (..., 3, 3) (``roma.rotmat_to_unitquat``,
    Markley's variant of Shepperd's method: accurate for every rotation, 180 degrees included)."""
    return canonical(roma.rotmat_to_unitquat(R))


def rot6d_to_rotmat(x: Tensor, eps: float = _NORM_EPS) -> Tensor:
    """Rotation matrix (..., 3, 3) of a raw 6D vector (..., 6) = ``(a1, a2)``: Gram-Schmidt (columns
    ``normalise(a1)``, ``normalise(a2 - <b1, a2> b1)``, their cross product). Finite for zero or colinear
    input (norms clamped at ``eps``; the result is then not a rotation)."""
    return roma.special_gramschmidt(x.unflatten(-1, (2, 3)).transpose(-1, -2), epsilon=eps)


def rot9d_to_rotmat(x: Tensor) -> Tensor:
    """The rotation matrix (..., 3, 3) nearest (Frobenius) the raw 3x3 matrix ``x`` (..., 9), row-major:
    ``U diag(1, 1, det(U V^T)) V^T`` (``roma.special_procrustes``; damped gradients where the projection is
    ill-conditioned)."""
    return roma.special_procrustes(x.unflatten(-1, (3, 3)))


def quat_angle(a: Tensor, b: Tensor) -> Tensor:
    """Geodesic angle in radians, in [0, pi], between rotations ``a`` and ``b`` (..., 4); sign-invariant.

    Both inputs are normalised. Computed as ``2 * atan2(|v|, |w|)`` with ``(v, w) = conj(a) * b``: stable
    in value near 0 and near pi. (Its derivative at exactly 0 is that of a norm; losses use a smoothed form.)
    """
    r = roma.quat_product(roma.quat_conjugation(safe_normalize(a)), safe_normalize(b))
    return 2 * torch.atan2(torch.linalg.vector_norm(r[..., :3], dim=-1), r[..., 3].abs())


def rotmat_angle(a: Tensor, b: Tensor, smooth: float = 0.0) -> Tensor:
    """Geodesic angle in radians, in [0, pi], between rotation matrices ``a`` and ``b`` (..., 3, 3).

    ``atan2(sqrt(|axial(R)|^2 + smooth^2), (tr(R) - 1) / 2)`` with ``R = a^T b``. ``smooth > 0`` (losses)
    gives a finite gradient at 0, where ``|axial|`` has a kink, at the cost of a bias below ``smooth``
    radians; the gradient stays of magnitude ~1 up to a hair from pi (``acos`` of the cosine has an
    infinite slope at 0 and at pi, roma's ``asin`` form at pi).
    """
    r = (a[..., :, :, None] * b[..., :, None, :]).sum(-3)  # a^T b, element-wise: no reduced precision under autocast
    axial = torch.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
    sin = torch.sqrt((axial * axial).sum(-1) / 4 + smooth * smooth)
    cos = (r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2] - 1) / 2
    return torch.atan2(sin, cos)


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
