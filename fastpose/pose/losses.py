"""Rotation losses (a registry by name), each added to a mask cross-entropy (and, when the network predicts
them, the translation and size terms of ``fastpose.pose.translation``: ``loss_trans``, ``loss_size``).

The mask term is a cross-entropy over background + classes, with background weighted ``BACKGROUND_WEIGHT``.
Every loss normalises predictions (a zero vector is safe), treats ``q`` and ``-q`` alike (it depends on
``|<q_hat, q>|`` or on the sign-invariant angle), is finite with finite gradients for any input, and
returns a zero still attached to the graph when there is nothing to compare (no foreground in the batch).

``d = |<normalise(q_hat), q>|`` below; ``theta = 2 * atan2(|v|, |w|)`` of the relative rotation.

========================  ================================================================================
``mse``                   The lab's baseline: per-pixel squared error of the (normalised) pixel quaternion
                          of the ground-truth class's field against the ground truth, on ground-truth
                          foreground pixels, sign-aware (``min(|q_hat - q|^2, |q_hat + q|^2) = 2 - 2d``).
                          The lab's version compared raw quaternions to the ``w >= 0`` ground truth; here
                          the sign is free, as the issue asks of every loss.
``qloss``                 ``log(eps + 1 - d)`` on the instance quaternion aggregated (sign-aligned mean)
                          over each ground-truth instance's pixels: the FastPoseCNN QLoss, which is right.
``pw-qloss``              the same per pixel, over ground-truth foreground pixels.
``geodesic``              the angle ``theta`` (radians) of each aggregated instance quaternion, with a
                          smoothed norms so the gradient is finite at 0 and non-vanishing towards 180.
``qloss-neglog``          ``-log(eps + 1 - d)``: the lab's "sign fix". WRONG: minimising it maximises the
                          distance, driving the error to 180 degrees. Kept only as a negative control.
``geodesic`` (6d, 9d)     the angle ``theta = atan2(sin, cos)`` of ``R_gt^T R`` (radians), ``R`` the
                          instance matrix (``fastpose.pose.aggregate.aggregate_rotmats``: the raw pixel
                          vectors averaged, then Gram-Schmidt or the SVD projection), smoothed like the
                          quaternion one (finite gradient at 0, magnitude ~1 up to a hair from 180).
``chordal`` (6d, 9d)      ``|R - R_gt|_F^2 = 8 sin^2(theta / 2)`` in [0, 8] on the same instance matrices
                          (Levinson et al. 2020 train the 9D head with it). Smooth everywhere; its slope
                          vanishes at 0 (like MSE) and at 180 degrees.
========================  ================================================================================

Which loss fits which representation (``REPRESENTATIONS``; ``build_loss`` and the run configuration refuse
other pairs): the quaternion losses need quaternions; ``chordal`` needs matrices; ``geodesic`` is the same
quantity in every representation (computed on quaternions for ``quaternion``, on matrices otherwise).
The matrix losses are applied to aggregated instances, like ``qloss`` and ``geodesic``: the study's
``geodesic`` rows then differ in the representation only, and the cost is one projection per instance
(a per-pixel form would project thousands of pixels per step). Symmetric classes need nothing here: the
ground truth of bottle, bowl and can is canonicalised by the data (``fastpose.pose.data``), so every
target is a function of the image, for matrices as for quaternions; a mug whose handle is hidden keeps
its full rotation as target in both (only the evaluation treats it as symmetric).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from fastpose.errors import FastposeError
import roma

from fastpose.pose.aggregate import class_field_pixels, gt_instance_quaternions, gt_instance_rotations
from fastpose.pose.indexing import flat_nonzero
from fastpose.pose.rotations import FIELD_KEYS, rotation_kind, rotmat_angle, safe_normalize

# Background is ~90% of the pixels of a synthetic image and the foreground is split over 6 classes, so an
# unweighted cross-entropy first learns "all background" (arg-max collapse) and finds objects slowly.
BACKGROUND_WEIGHT = 0.25  # class weight of background in the mask cross-entropy (objects: 1)
_SMOOTH = 1e-6  # smoothing of the norms inside the geodesic angle (radians)


# ----------------------------------------------------------------------------- functional cores on (N, 4)
def abs_dot(pred: Tensor, gt: Tensor) -> Tensor:
    """``|<normalise(pred), normalise(gt)>|`` (N,) in [0, 1]."""
    return (safe_normalize(pred) * safe_normalize(gt)).sum(-1).abs().clamp(max=1.0)


def qloss(pred: Tensor, gt: Tensor, eps: float = 1e-2, reduction: str = "mean") -> Tensor:
    """QLoss ``log(eps + 1 - |<normalise(pred), gt>|)`` for (N, 4) quaternions; minimal when aligned."""
    return _reduce(torch.log(eps + 1 - abs_dot(pred, gt)), reduction, pred)


def qloss_neglog(pred: Tensor, gt: Tensor, eps: float = 1e-2, reduction: str = "mean") -> Tensor:
    """WRONG on purpose (the lab's sign bug): ``-log(eps + 1 - d)`` rewards moving *away* from ``gt``."""
    return _reduce(-torch.log(eps + 1 - abs_dot(pred, gt)), reduction, pred)


def geodesic_loss(pred: Tensor, gt: Tensor, reduction: str = "mean") -> Tensor:
    """Geodesic angle in radians between (N, 4) quaternions, sign-invariant, with stable gradients.

    ``2 * atan2(sqrt(|v|^2 + s^2), sqrt(w^2 + s^2))`` with ``(v, w) = conj(gt) * normalise(pred)`` and
    ``s = 1e-6``: the angle to within ~2e-6 rad, with finite gradients at 0 (where ``|v|`` has a kink) and
    of magnitude ~2 up to a hair from 180 degrees (``acos`` of a dot product has infinite slope at 0 and
    none at 180). A zero prediction scores 90 degrees, not 0.
    """
    r = roma.quat_product(roma.quat_conjugation(safe_normalize(gt)), safe_normalize(pred))
    v = torch.sqrt((r[..., :3] ** 2).sum(-1) + _SMOOTH**2)
    w = torch.sqrt(r[..., 3] ** 2 + _SMOOTH**2)
    return _reduce(2 * torch.atan2(v, w), reduction, pred)


def sign_mse(pred: Tensor, gt: Tensor, reduction: str = "mean") -> Tensor:
    """``min(|normalise(pred) - gt|^2, |normalise(pred) + gt|^2)`` for (N, 4) quaternions."""
    p = safe_normalize(pred)
    err = torch.minimum(((p - gt) ** 2).sum(-1), ((p + gt) ** 2).sum(-1))
    return _reduce(err, reduction, pred)


# ----------------------------------------------------------------------------- functional cores on (N, 3, 3)
def rotmat_geodesic_loss(pred: Tensor, gt: Tensor, reduction: str = "mean") -> Tensor:
    """Geodesic angle in radians between (N, 3, 3) rotation matrices (``fastpose.pose.rotations.rotmat_angle``
    with smoothing ``1e-6``): within ~1e-6 rad of the angle, finite gradients at 0 and near 180 degrees."""
    return _reduce(rotmat_angle(gt, pred, smooth=_SMOOTH), reduction, pred)


def chordal_loss(pred: Tensor, gt: Tensor, reduction: str = "mean") -> Tensor:
    """Squared Frobenius distance ``|pred - gt|_F^2`` (N,) of (N, 3, 3) matrices; ``8 sin^2(theta / 2)`` for
    rotations."""
    return _reduce(((pred - gt) ** 2).sum((-2, -1)), reduction, pred)


def _reduce(x: Tensor, reduction: str, like: Tensor) -> Tensor:
    if reduction == "none":
        return x
    if x.numel() == 0:
        return like.sum() * 0.0  # nothing to compare: a zero still attached to the graph
    return x.mean() if reduction == "mean" else x.sum()


# ----------------------------------------------------------------------------- losses on (out, batch)
class PoseLoss:
    """``terms = loss(out, batch)`` -> ``{"loss", "loss_mask", "loss_rot"}`` (scalars, attached), plus
    ``loss_trans`` and ``loss_size`` when ``out`` has the translation heads (``"centre"``).

    ``loss = mask_weight * loss_mask + rot_weight * loss_rot + trans_weight * loss_trans + size_weight * loss_size``.
    """

    name = "base"
    representations: tuple[str, ...] = ()  # the rotation representations it applies to

    def __init__(self, eps: float = 1e-2, mask_weight: float = 1.0, rot_weight: float = 1.0,
                 trans_weight: float = 1.0, size_weight: float = 1.0) -> None:
        self.eps, self.mask_weight, self.rot_weight = eps, mask_weight, rot_weight
        self.trans_weight, self.size_weight = trans_weight, size_weight

    def rotation(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def __call__(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = out["mask_logits"].float()
        weight = torch.ones(logits.shape[1], device=logits.device)
        weight[0] = BACKGROUND_WEIGHT
        loss_mask = F.cross_entropy(logits, batch["class_mask"], weight=weight)
        loss_rot = self.rotation(out, batch)
        terms = {"loss": self.mask_weight * loss_mask + self.rot_weight * loss_rot,
                 "loss_mask": loss_mask, "loss_rot": loss_rot}
        if "centre" in out:
            from fastpose.pose.translation import translation_losses

            extra = translation_losses(out, batch)
            terms["loss"] = terms["loss"] + self.trans_weight * extra["loss_trans"] + self.size_weight * extra["loss_size"]
            terms.update(extra)
        return terms

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(eps={self.eps}, mask_weight={self.mask_weight}, rot_weight={self.rot_weight}, "
                f"trans_weight={self.trans_weight}, size_weight={self.size_weight})")


def _foreground_pixels(out: dict[str, Tensor], batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Pixel quaternions of the ground-truth class's field on ground-truth foreground, and their targets."""
    cm = batch["class_mask"]
    B, H, W = cm.shape
    flat = cm.reshape(-1)
    f = flat_nonzero(flat > 0)
    pred = class_field_pixels(out["quaternion"], f, flat[f]).float()  # fp32 even under mixed precision
    gt = class_field_pixels(batch["quaternion_map"], f, torch.ones_like(f)).float()
    return pred, gt


def _anchor(out: dict[str, Tensor], value: Tensor) -> Tensor:
    return value + out[FIELD_KEYS[rotation_kind(out)]].sum() * 0.0 if value.grad_fn is None else value


class MSELoss(PoseLoss):
    name = "mse"
    representations = ("quaternion",)

    def rotation(self, out, batch):
        pred, gt = _foreground_pixels(out, batch)
        return _anchor(out, sign_mse(pred, gt))


class QLoss(PoseLoss):
    name = "qloss"
    representations = ("quaternion",)

    def rotation(self, out, batch):
        inst = gt_instance_quaternions(out, batch)
        return _anchor(out, qloss(inst["pred"], inst["gt"].float(), self.eps))


class PixelQLoss(PoseLoss):
    name = "pw-qloss"
    representations = ("quaternion",)

    def rotation(self, out, batch):
        pred, gt = _foreground_pixels(out, batch)
        return _anchor(out, qloss(pred, gt, self.eps))


class GeodesicLoss(PoseLoss):
    name = "geodesic"
    representations = ("quaternion", "6d", "9d")

    def rotation(self, out, batch):
        if rotation_kind(out) == "quaternion":
            inst = gt_instance_quaternions(out, batch)
            return _anchor(out, geodesic_loss(inst["pred"], inst["gt"]))
        inst = gt_instance_rotations(out, batch)
        return _anchor(out, rotmat_geodesic_loss(inst["pred"], inst["gt"]))


class ChordalLoss(PoseLoss):
    name = "chordal"
    representations = ("6d", "9d")

    def rotation(self, out, batch):
        inst = gt_instance_rotations(out, batch)
        return _anchor(out, chordal_loss(inst["pred"], inst["gt"]))


class NegLogQLoss(PoseLoss):
    """WRONG on purpose: the lab's sign "fix"; a negative control for the loss study."""

    name = "qloss-neglog"
    representations = ("quaternion",)

    def rotation(self, out, batch):
        inst = gt_instance_quaternions(out, batch)
        return _anchor(out, qloss_neglog(inst["pred"], inst["gt"], self.eps))


LOSSES: dict[str, type[PoseLoss]] = {cls.name: cls for cls in (MSELoss, QLoss, PixelQLoss, GeodesicLoss,
                                                               ChordalLoss, NegLogQLoss)}
REPRESENTATIONS: dict[str, tuple[str, ...]] = {name: cls.representations for name, cls in LOSSES.items()}


def build_loss(name: str, eps: float = 1e-2, mask_weight: float = 1.0, rot_weight: float = 1.0,
               trans_weight: float = 1.0, size_weight: float = 1.0, rotation: str = "quaternion"
               ) -> Callable[[dict[str, Tensor], dict[str, Tensor]], dict[str, Tensor]]:
    """The loss registered under ``name`` (see ``LOSSES``) for the ``rotation`` representation; an unknown
    name, or one that does not fit the representation, raises FastposeError."""
    if name not in LOSSES:
        raise FastposeError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    if rotation not in LOSSES[name].representations:
        fits = [n for n, cls in LOSSES.items() if rotation in cls.representations]
        raise FastposeError(f"loss {name!r} does not fit the {rotation} rotation representation; "
                            f"choose one of: {', '.join(fits)}")
    return LOSSES[name](eps=eps, mask_weight=mask_weight, rot_weight=rot_weight, trans_weight=trans_weight,
                        size_weight=size_weight)
