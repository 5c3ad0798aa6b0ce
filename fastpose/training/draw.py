"""Pose axes drawn into images for TensorBoard's images tab: plain torch, no OpenCV.

``pose_panel`` builds, for a few validation samples, a grid whose rows are samples and whose two columns
are the image with the ground-truth axes and the image with the predicted axes (x red, y green, z blue).
Each axis is projected with the pinhole ``intrinsics``: origin ``K t``, tip ``K (t + R e_i * L)``, with
``L`` half the object's largest extent. The predicted rotation is drawn at the ground-truth translation
(the network predicts rotation only); a ground-truth object the network missed is drawn grey.
"""

from __future__ import annotations

import torch
from torch import Tensor

AXIS_COLOURS = torch.tensor([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.2, 0.4, 1.0]])
MISSED = torch.tensor([0.5, 0.5, 0.5])


def to_display(image: Tensor) -> Tensor:
    """(3,H,W) normalised image -> (3,H,W) in [0,1] by min-max per image (works for any normalisation)."""
    lo, hi = image.amin(), image.amax()
    return ((image - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)


def project(K: Tensor, points: Tensor) -> Tensor:
    """Pinhole projection of camera-space points (...,3) -> pixel coordinates (...,2) (u right, v down)."""
    uvw = points @ K.T
    return uvw[..., :2] / uvw[..., 2:].clamp_min(1e-6)


def axes_2d(K: Tensor, R: Tensor, t: Tensor, length: Tensor) -> Tensor:
    """Projected (origin, x tip, y tip, z tip) (N,4,2) of N objects: R (N,3,3), t (N,3), length (N,)."""
    tips = t[:, None, :] + R.transpose(1, 2) * length[:, None, None]  # row i = t + R[:, i] * L
    return project(K, torch.cat([t[:, None, :], tips], dim=1))


def draw_line(image: Tensor, p0: Tensor, p1: Tensor, colour: Tensor, width: int = 1) -> None:
    """Draw a segment into ``image`` (3,H,W) in place: sampled points, clipped to the image."""
    _, H, W = image.shape
    n = int(max(abs(float(p1[0] - p0[0])), abs(float(p1[1] - p0[1])), 1.0) * 2) + 1
    s = torch.linspace(0, 1, n)[:, None]
    pts = (p0[None] * (1 - s) + p1[None] * s).round().long()
    for du in range(-(width // 2), width - width // 2):
        for dv in range(-(width // 2), width - width // 2):
            u, v = pts[:, 0] + du, pts[:, 1] + dv
            keep = (u >= 0) & (u < W) & (v >= 0) & (v < H)
            image[:, v[keep], u[keep]] = colour[:, None]


def draw_axes(image: Tensor, K: Tensor, R: Tensor, t: Tensor, size: Tensor, missed: Tensor | None = None) -> Tensor:
    """A copy of ``image`` (3,H,W, in [0,1]) with the axes of N objects drawn (z first, so x ends on top)."""
    out = image.clone()
    if R.shape[0] == 0:
        return out
    width = 1 if image.shape[-1] <= 128 else 2
    pts = axes_2d(K.float(), R.float(), t.float(), 0.5 * size.float().amax(dim=-1).clamp_min(1e-3))
    for n in range(R.shape[0]):
        for axis in (2, 1, 0):
            colour = MISSED if missed is not None and bool(missed[n]) else AXIS_COLOURS[axis]
            draw_line(out, pts[n, 0], pts[n, axis + 1], colour, width)
    return out


def pose_panel(batch: dict, pred_rot: Tensor, matched: Tensor, count: int) -> Tensor:
    """(3, count*H, 2*W) grid: per sample, [GT axes | predicted axes].

    ``pred_rot`` (B,M,3,3) and ``matched`` (B,M) are per ground-truth slot of the batch.
    """
    rows = []
    for b in range(min(count, batch["image"].shape[0])):
        image = to_display(batch["image"][b].detach().float().cpu())
        valid = batch["inst_valid"][b].cpu().bool()
        K, t, size = (batch[k][b].detach().cpu() for k in ("intrinsics", "inst_trans", "inst_size"))
        gt = draw_axes(image, K, batch["inst_rot"][b].detach().cpu()[valid], t[valid], size[valid])
        pred = draw_axes(image, K, pred_rot[b].cpu()[valid], t[valid], size[valid], missed=~matched[b].cpu()[valid])
        rows.append(torch.cat([gt, pred], dim=2))
    return torch.cat(rows, dim=1) if rows else torch.zeros(3, 1, 1)
