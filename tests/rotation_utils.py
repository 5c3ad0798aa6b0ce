"""Test helpers on top of roma: seeded canonical random quaternions and axis-angle construction."""

from __future__ import annotations

import roma
import torch
from roma import quat_product  # noqa: F401  (re-exported for the tests)

from fastpose.pose.rotations import canonical, safe_normalize


def random_quat(n: int | tuple[int, ...], generator: torch.Generator | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform rotations (n..., 4), canonical (``w >= 0``), drawn in float64 from ``generator``."""
    return canonical(roma.random_unitquat(n, dtype=torch.float64, generator=generator)).to(dtype)


def axis_angle_to_quat(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Quaternion (..., 4) of a rotation by ``angle`` (...) radians about ``axis`` (..., 3) (normalised here)."""
    return roma.rotvec_to_unitquat(safe_normalize(axis) * angle[..., None])
