"""Translation and size: per-pixel centre votes, log-depth and per-class log-size, aggregated per instance.

As in FastPoseCNN, every object pixel predicts where its object's centre projects, how far the centre is
from the camera and how large the object is; an instance's pose is recovered from its pixels (monocular,
RGB only). The network outputs (``fastpose.pose.model.FastPoseNet``), at the input resolution::

    out["centre"]     (B, 2, H, W)   offset from the pixel's centre to the object's projected centre,
                                     in units of the image width (x) and height (y)
    out["log_depth"]  (B, 1, H, W)   log of the z of the object's centre (metres)
    out["log_size"]   (B, 3C, H, W)  log of the box extents (metres) per class; channels 3c..3c+2: class c+1

Pixel-centre convention (shared by the renderer, the NOCS loader and this module): the pixel with index
``(u, v)`` (column, row) covers ``[u, u + 1) x [v, v + 1)`` in continuous image coordinates, its centre is
``(u + 0.5, v + 0.5)``, and the intrinsics ``K`` map a camera point ``p`` to continuous coordinates
``K p / p_z``. (OpenCV puts pixel centres on integers; the NOCS loader converts its matrices.)

Targets (``translation_targets``): for a ground-truth instance with centre ``t`` (camera frame) the projected
centre is ``c = (K t / t_z)[:2]``; a pixel's offset target is ``(c - (u + 0.5, v + 0.5)) / (W, H)``, its depth
target ``log t_z`` and its size target ``log inst_size``.

Aggregation (``recover_translation``): per predicted instance, the votes ``pixel centre + offset * (W, H)``
are averaged robustly (the mean, then ``IRLS_STEPS`` re-weightings with Cauchy weights
``1 / (1 + (d / sigma)^2)``, ``sigma = VOTE_SIGMA * W``), log-depth and log-size (in the instance's class
field) are averaged, and ``t = z * K^-1 [c_x, c_y, 1]``. Everything is a scatter over pixels: no loop over
instances.

Losses (``translation_losses``): on ground-truth foreground pixels, ``loss_trans`` is the mean L1 error of
the offsets (in image units, times ``OFFSET_SCALE``: a 1-pixel error at 64 px weighs 0.1) plus
``DEPTH_SCALE`` times the mean L1 error of the log-depth (a 1 % depth error weighs 0.2: depth is the hard
part of the translation, and at weight 1 the demo model's depth stayed near the class mean); ``loss_size``
is the mean L1 error of the log-size in the ground-truth class's field. Both are zero, still attached to the graph, without foreground.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fastpose.pose.aggregate import _gt_foreground, _pixel_elements
from fastpose.pose.indexing import flat_nonzero

VOTE_SIGMA = 0.03  # Cauchy scale of the centre votes' robust mean, in image widths (about 2 px at 64 px)
IRLS_STEPS = 2
OFFSET_SCALE = 6.4  # offsets are in image units: x6.4 makes a 1/64 (one pixel at 64 px) error weigh 0.1
DEPTH_SCALE = 20.0  # log-depth L1 weight inside loss_trans. Demo config at 5 epochs, median translation error:
#                    x1 6.9 cm, x5 5.9, x20 4.9, x50 4.5 (but there the mask lagged: miss rate 0.64, not 0.57)
DEPTH_PRIOR = 0.6  # metres: the depth head's initial output (bias), the middle of the synthetic range
SIZE_PRIOR = 0.15  # metres: the size head's initial output


def project(points: Tensor, K: Tensor) -> Tensor:
    """Continuous image coordinates (N, 2) of camera points (N, 3) under intrinsics (N, 3, 3)."""
    p = (K @ points.unsqueeze(-1)).squeeze(-1)
    return p[:, :2] / p[:, 2:3]


def back_project(uv: Tensor, z: Tensor, K: Tensor) -> Tensor:
    """Camera points (N, 3) at depth ``z`` (N,) through continuous image coordinates ``uv`` (N, 2)."""
    ray = torch.linalg.solve(K, torch.cat([uv, torch.ones_like(uv[:, :1])], 1).unsqueeze(-1)).squeeze(-1)
    return ray / ray[:, 2:3] * z[:, None]


def pixel_rays(K: Tensor, H: int, W: int) -> Tensor:
    """Camera rays (H * W, 3) with z = 1 through the centres ``(u + 0.5, v + 0.5)`` of the pixels of an H x W
    image, row-major: the one pixel-centre convention (renderer, NOCS loader, pose recovery). ``K`` (3, 3)."""
    K = torch.as_tensor(K, dtype=torch.float64)
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    uv1 = torch.stack([u + 0.5, v + 0.5, torch.ones_like(u)], -1).reshape(-1, 3)
    rays = torch.linalg.solve(K, uv1.T).T
    return rays / rays[:, 2:3]


def _pixel_uv(flat: Tensor, H: int, W: int) -> Tensor:
    """Continuous coordinates (P, 2) of the centres of flat pixels ``b * H * W + v * W + u``."""
    p = flat % (H * W)
    return torch.stack([(p % W).float() + 0.5, (p // W).float() + 0.5], 1)


def _gather(field: Tensor, image: Tensor, pixel: Tensor) -> Tensor:
    """(P, K) values of ``field`` (B, K, H, W) at ``image`` (P,) and in-image pixel ``pixel`` (P,)."""
    return field.flatten(2)[image, :, pixel]


def _pixel_channels(field: Tensor, pixel: Tensor, image: Tensor, width: int, first: Tensor | None = None) -> Tensor:
    """(P, width) values of ``field`` (B, K, H, W) at flat pixels ``pixel`` (P,) ``b * H * W + p`` of images
    ``image`` (P,) = ``b``, channels ``first .. first + width - 1`` (``first`` (P,), default 0).

    The same values as ``_gather`` (and ``field[image, first + j, p]``), read by one ``index_select`` on the
    tensor's memory (an NCHW or channels-last one is not copied): several times faster on CPU than advanced
    indexing."""
    elements, offset, sk = _pixel_elements(field, pixel, image)
    if first is not None:
        offset = offset + first.to(offset.dtype) * sk
    idx = offset[:, None] + torch.arange(0, width * sk, sk, dtype=offset.dtype, device=pixel.device)
    return elements.index_select(0, idx.reshape(-1)).view(-1, width)


def _wide(x: Tensor) -> Tensor:
    """float32 at least (half precision under AMP is widened; float64 stays, for gradcheck)."""
    return x if x.dtype == torch.float64 else x.float()


def translation_losses(out: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """``{"loss_trans", "loss_size"}`` (scalars) of the module docstring."""
    B, _, H, W = out["centre"].shape
    f, image, slot = _gt_foreground(batch)
    pixel = f % (H * W)
    anchor = (out["centre"].sum() + out["log_depth"].sum() + out["log_size"].sum()) * 0.0
    if f.numel() == 0:
        return {"loss_trans": anchor, "loss_size": anchor}
    t = batch["inst_trans"].reshape(-1, 3).index_select(0, slot).float()
    size = batch["inst_size"].reshape(-1, 3).index_select(0, slot).float()
    cls = batch["inst_class"].reshape(-1).index_select(0, slot)
    K = batch["intrinsics"].float().index_select(0, image)
    scale = torch.tensor([W, H], dtype=torch.float32, device=f.device)
    target = (project(t, K) - _pixel_uv(f, H, W)) / scale
    offset = _wide(_gather(out["centre"], image, pixel))
    log_z = _wide(_gather(out["log_depth"], image, pixel))[:, 0]
    chan = (cls - 1).clamp_min(0)[:, None] * 3 + torch.arange(3, device=f.device)
    log_size = _wide(out["log_size"].flatten(2)[image[:, None], chan, pixel[:, None]])
    loss_depth = (log_z - t[:, 2].clamp_min(1e-3).log()).abs().mean()
    loss_trans = OFFSET_SCALE * (offset - target).abs().sum(1).mean() + DEPTH_SCALE * loss_depth
    loss_size = (log_size - size.clamp_min(1e-4).log()).abs().sum(1).mean()
    return {"loss_trans": loss_trans + anchor, "loss_size": loss_size + anchor}


def group_mean(values: Tensor, group: Tensor, num_groups: int, weight: Tensor | None = None) -> Tensor:
    """Weighted mean (num_groups, D) of ``values`` (P, D) per ``group`` (P,) (0 for an empty group)."""
    w = torch.ones_like(values[:, 0]) if weight is None else weight
    total = torch.zeros(num_groups, values.shape[1], dtype=values.dtype, device=values.device)
    total.index_add_(0, group, values * w[:, None])
    norm = torch.zeros(num_groups, dtype=values.dtype, device=values.device).index_add_(0, group, w)
    return total / norm.clamp_min(1e-12)[:, None]


def recover_translation(out: dict[str, Tensor], pixel: Tensor, instance: Tensor, image_k: Tensor,
                        class_k: Tensor, intrinsics: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Translation (K, 3), size (K, 3) and projected centre (K, 2) of K predicted instances.

    ``pixel`` (P,) are flat pixels ``b * H * W + v * W + u`` of the instances, ``instance`` (P,) their
    instance in 0..K-1, ``image_k`` (K,) and ``class_k`` (K,) each instance's image and class (1..C),
    ``intrinsics`` (B, 3, 3). See the module docstring.
    """
    B, _, H, W = out["centre"].shape
    n = image_k.numel()
    dev = pixel.device
    if n == 0:
        z = torch.zeros(0, 3, device=dev)
        return z, z.clone(), torch.zeros(0, 2, device=dev)
    image = pixel // (H * W)
    scale = torch.tensor([W, H], dtype=torch.float32, device=dev)
    votes = _pixel_uv(pixel, H, W) + _pixel_channels(out["centre"], pixel, image, 2).float() * scale
    centre = group_mean(votes, instance, n)
    sigma = VOTE_SIGMA * W
    for _ in range(IRLS_STEPS):
        d2 = ((votes - centre.index_select(0, instance)) ** 2).sum(1)
        centre = group_mean(votes, instance, n, 1.0 / (1.0 + d2 / sigma ** 2))
    log_z = group_mean(_pixel_channels(out["log_depth"], pixel, image, 1).float(), instance, n)[:, 0]
    first = (class_k.index_select(0, instance) - 1).clamp_min(0) * 3  # the instance's class field
    log_size = group_mean(_pixel_channels(out["log_size"], pixel, image, 3, first).float(), instance, n)
    K = intrinsics.float().index_select(0, image_k)
    t = back_project(centre, log_z.exp(), K)
    return t, log_size.exp(), centre


def instance_pixels(instance_map: Tensor) -> tuple[Tensor, Tensor]:
    """Flat pixels (P,) and instance index (P,) (0-based) of an instance map (B, H, W) holding ``1 + k``."""
    flat = instance_map.reshape(-1)
    f = flat_nonzero(flat > 0)
    return f, flat.index_select(0, f) - 1


def init_heads(bias_depth: Tensor, bias_size: Tensor) -> None:
    """Initial outputs: depth ``DEPTH_PRIOR``, sizes ``SIZE_PRIOR`` (in place, on the heads' bias vectors)."""
    with torch.no_grad():
        bias_depth.fill_(math.log(DEPTH_PRIOR))
        bias_size.fill_(math.log(SIZE_PRIOR))
