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
========================  ================================================================================
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from fastpose.errors import FastposeError
from fastpose.pose.aggregate import class_field_pixels, gt_instance_quaternions
from fastpose.pose.indexing import flat_nonzero
from fastpose.pose.rotations import quat_conjugate, quat_product, safe_normalize

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
    r = quat_product(quat_conjugate(safe_normalize(gt)), safe_normalize(pred))
    v = torch.sqrt((r[..., :3] ** 2).sum(-1) + _SMOOTH**2)
    w = torch.sqrt(r[..., 3] ** 2 + _SMOOTH**2)
    return _reduce(2 * torch.atan2(v, w), reduction, pred)


def sign_mse(pred: Tensor, gt: Tensor, reduction: str = "mean") -> Tensor:
    """``min(|normalise(pred) - gt|^2, |normalise(pred) + gt|^2)`` for (N, 4) quaternions."""
    p = safe_normalize(pred)
    err = torch.minimum(((p - gt) ** 2).sum(-1), ((p + gt) ** 2).sum(-1))
    return _reduce(err, reduction, pred)


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
    return value + out["quaternion"].sum() * 0.0 if value.grad_fn is None else value


class MSELoss(PoseLoss):
    name = "mse"

    def rotation(self, out, batch):
        pred, gt = _foreground_pixels(out, batch)
        return _anchor(out, sign_mse(pred, gt))


class QLoss(PoseLoss):
    name = "qloss"

    def rotation(self, out, batch):
        inst = gt_instance_quaternions(out, batch)
        return _anchor(out, qloss(inst["pred"], inst["gt"].float(), self.eps))


class PixelQLoss(PoseLoss):
    name = "pw-qloss"

    def rotation(self, out, batch):
        pred, gt = _foreground_pixels(out, batch)
        return _anchor(out, qloss(pred, gt, self.eps))


class GeodesicLoss(PoseLoss):
    name = "geodesic"

    def rotation(self, out, batch):
        inst = gt_instance_quaternions(out, batch)
        return _anchor(out, geodesic_loss(inst["pred"], inst["gt"]))


class NegLogQLoss(PoseLoss):
    """WRONG on purpose: the lab's sign "fix"; a negative control for the loss study."""

    name = "qloss-neglog"

    def rotation(self, out, batch):
        inst = gt_instance_quaternions(out, batch)
        return _anchor(out, qloss_neglog(inst["pred"], inst["gt"], self.eps))


LOSSES: dict[str, type[PoseLoss]] = {cls.name: cls for cls in (MSELoss, QLoss, PixelQLoss, GeodesicLoss, NegLogQLoss)}


def build_loss(name: str, eps: float = 1e-2, mask_weight: float = 1.0, rot_weight: float = 1.0,
               trans_weight: float = 1.0, size_weight: float = 1.0
               ) -> Callable[[dict[str, Tensor], dict[str, Tensor]], dict[str, Tensor]]:
    """The loss registered under ``name`` (see ``LOSSES``); an unknown name raises FastposeError."""
    if name not in LOSSES:
        raise FastposeError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return LOSSES[name](eps=eps, mask_weight=mask_weight, rot_weight=rot_weight, trans_weight=trans_weight,
                        size_weight=size_weight)
