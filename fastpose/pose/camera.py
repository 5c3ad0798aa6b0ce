"""Image sizes, the synthetic camera, and the map from an image to the network's input (resize, crop, letterbox).

Sizes are ``(height, width)`` tuples everywhere in ``fastpose.pose``; an ``int`` is a square
(``image_hw(64) == (64, 64)``). On the command line and in configs the text is ``WIDTHxHEIGHT``
(``640x480``), the way image sizes are written; ``parse_image_size`` turns it into ``(height, width)``.

Pixel-centre convention (``fastpose.pose.translation``): pixel ``(u, v)`` covers ``[u, u + 1) x [v, v + 1)``
in continuous image coordinates. Under it, resizing an image by ``sx`` horizontally (``F.interpolate`` with
``align_corners=False``) maps every continuous coordinate ``x`` to ``sx * x`` exactly, cropping at column
``x0`` maps it to ``x - x0``, and padding by ``px`` columns to ``x + px``; the intrinsics follow as
``K' = A K`` with ``A`` the same affine map of the image plane. No half-pixel terms appear anywhere.

=========================  ================================================================================
``image_hw(size)``         ``int`` (a square) or ``(H, W)`` -> ``(H, W)``, positive ints (``fastpose.sizes``)
``parse_image_size(text)`` ``"640x480"`` (width x height) or ``"64"`` (a square) -> ``(H, W)`` (``fastpose.sizes``)
``synthetic_intrinsics``   the synthetic camera: focal length ``min(H, W)`` pixels (fx = fy), principal
                           point at the image centre ``(W / 2, H / 2)``: a square image's camera, with the
                           frame widened along its longer side
``opencv_to_fastpose(K)``  ``cx, cy`` + 0.5 (OpenCV puts pixel centres on integers; ``fastpose_to_opencv``
                           subtracts it)
``fit_frame(src, dst, m)`` the ``FrameMap`` of mode ``m``: ``resize`` (the whole frame, each axis scaled to
                           the target, aspect changes if the two differ), ``crop`` (the largest centred
                           region of the target's aspect, then resized), ``letterbox`` (the whole frame
                           scaled by one factor to fit, centred, the rest padded)
=========================  ================================================================================

``FrameMap`` holds the three steps every mode is made of: a crop box of the source, the size the crop is
resized to, and where that lies in the output (the pad offset). ``intrinsics(K)`` gives the output's
camera, ``resample(t)`` the output image (or label map), ``to_source(uv)`` maps output coordinates back to
the source image, ``valid()`` is the output's mask of real (not padded) pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fastpose.sizes import format_image_size, image_hw, parse_image_size  # noqa: F401 (re-exported)

FIT_MODES = ("resize", "crop", "letterbox")


def synthetic_intrinsics(size: int | tuple[int, int]) -> Tensor:
    """The synthetic camera (3, 3) float32 for an image of ``size``: ``f = min(H, W)``, principal point
    ``(W / 2, H / 2)`` (fastpose's pixel centres). A square of side ``s`` gets ``f = s``: about 53 degrees of
    field of view across the square; a wider image sees more to the sides at the same scale."""
    h, w = image_hw(size)
    f = float(min(h, w))
    return torch.tensor([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float32)


def opencv_to_fastpose(K: np.ndarray) -> np.ndarray:
    """A copy of the (3, 3) matrix ``K`` with OpenCV's pixel centres (integers) moved to fastpose's
    (``u + 0.5``): ``cx, cy`` + 0.5."""
    K = np.array(K, dtype=np.float64)
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return K


def fastpose_to_opencv(K: np.ndarray) -> np.ndarray:
    """The inverse of ``opencv_to_fastpose``."""
    K = np.array(K, dtype=np.float64)
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    return K


@dataclass(frozen=True)
class FrameMap:
    """From a source image of ``src`` = (H, W) to an output of ``dst`` = (H', W'): the source's crop box
    ``crop`` = (x0, y0, width, height) is resized to ``inner`` = (height, width) and placed at ``pad`` =
    (px, py) in the output (zeros, or ``fill``, elsewhere)."""

    src: tuple[int, int]
    dst: tuple[int, int]
    crop: tuple[int, int, int, int]
    inner: tuple[int, int]
    pad: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): output pixels per source pixel, horizontally and vertically."""
        return self.inner[1] / self.crop[2], self.inner[0] / self.crop[3]

    @property
    def identity(self) -> bool:
        return self.src == self.dst == self.inner and self.crop[:2] == (0, 0) and self.pad == (0, 0)

    def intrinsics(self, K: np.ndarray | Tensor) -> np.ndarray:
        """The output image's camera (3, 3) float64 from the source's ``K`` (fastpose's convention):
        ``fx' = sx fx``, ``cx' = (cx - x0) sx + px`` (and the same vertically)."""
        K = np.array(K.detach().cpu().numpy() if isinstance(K, Tensor) else K, dtype=np.float64)
        (sx, sy), (x0, y0), (px, py) = self.scale, self.crop[:2], self.pad
        out = K.copy()
        out[0, 0], out[0, 1], out[0, 2] = K[0, 0] * sx, K[0, 1] * sx, (K[0, 2] - x0) * sx + px
        out[1, 1], out[1, 2] = K[1, 1] * sy, (K[1, 2] - y0) * sy + py
        return out

    def to_source(self, uv: Tensor | np.ndarray) -> Tensor | np.ndarray:
        """Continuous output coordinates (..., 2) -> the source image's (the inverse of the map)."""
        (sx, sy), (x0, y0), (px, py) = self.scale, self.crop[:2], self.pad
        u = (uv[..., 0] - px) / sx + x0
        v = (uv[..., 1] - py) / sy + y0
        return torch.stack([u, v], -1) if isinstance(uv, Tensor) else np.stack([u, v], -1)

    def resample(self, image: Tensor, mode: str = "bilinear", fill: float = 0.0) -> Tensor:
        """``image`` (C, H, W) or (H, W) of the source -> the output (C, H', W') or (H', W'), same dtype.

        ``mode``: ``bilinear`` (antialiased, for pictures) or ``nearest-exact`` (label maps, depth: every
        output pixel takes the source pixel under its centre)."""
        if mode not in ("bilinear", "nearest-exact"):
            raise ValueError(f"mode must be bilinear or nearest-exact, not {mode!r}")
        planar = image.dim() == 2
        x = image[None] if planar else image
        x0, y0, cw, ch = self.crop
        x = x[:, y0:y0 + ch, x0:x0 + cw]
        if (ch, cw) != self.inner:
            dtype = x.dtype
            extra = {"antialias": True, "align_corners": False} if mode == "bilinear" else {}
            x = F.interpolate(x[None].float(), size=self.inner, mode=mode, **extra)[0]
            x = x.round().to(dtype) if not dtype.is_floating_point else x.to(dtype)
        if self.inner != self.dst:
            px, py = self.pad
            out = torch.full((x.shape[0],) + self.dst, fill, dtype=x.dtype, device=x.device)
            out[:, py:py + self.inner[0], px:px + self.inner[1]] = x
            x = out
        return x[0] if planar else x

    def valid(self) -> Tensor:
        """(H', W') bool: the output pixels that show the source (False on the padding)."""
        m = torch.zeros(self.dst, dtype=torch.bool)
        px, py = self.pad
        m[py:py + self.inner[0], px:px + self.inner[1]] = True
        return m


def fit_frame(src: int | tuple[int, int], dst: int | tuple[int, int] | None, mode: str = "resize") -> FrameMap:
    """The ``FrameMap`` that brings a ``src`` image to ``dst`` by ``mode`` (see the module docstring);
    ``dst=None`` keeps the source as it is."""
    H, W = image_hw(src)
    if dst is None:
        return FrameMap((H, W), (H, W), (0, 0, W, H), (H, W), (0, 0))
    h, w = image_hw(dst)
    if mode == "resize":
        return FrameMap((H, W), (h, w), (0, 0, W, H), (h, w), (0, 0))
    if mode == "crop":  # the largest centred box of the target's aspect (a square target: the old centre crop)
        if W * h > H * w:  # source wider than the target
            cw, ch = min(W, max(1, round(H * w / h))), H
        else:
            cw, ch = W, min(H, max(1, round(W * h / w)))
        return FrameMap((H, W), (h, w), ((W - cw) // 2, (H - ch) // 2, cw, ch), (h, w), (0, 0))
    if mode == "letterbox":
        s = min(w / W, h / H)
        iw, ih = min(w, max(1, round(W * s))), min(h, max(1, round(H * s)))
        return FrameMap((H, W), (h, w), (0, 0, W, H), (ih, iw), ((w - iw) // 2, (h - ih) // 2))
    raise ValueError(f"mode must be one of {', '.join(FIT_MODES)}, not {mode!r}")
