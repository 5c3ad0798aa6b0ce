"""The pose panel of TensorBoard's images tab (``val/poses``), drawn with Pillow.

``pose_panel`` lays out a few validation samples, one row each, in two columns under a caption band:
``ground truth`` (the true axes of every object, labelled with its class) and ``predicted`` (the predicted
rotation's axes, labelled with the object's rotation error in degrees). Axes are x red, y green, z blue,
half the object's largest extent long, projected with the pinhole ``intrinsics``: origin ``K t``, tip
``K (t + R e_i L)``. The predicted rotation is drawn at the true translation, so the two tiles differ only
by rotation. A ground-truth object the network missed (no detection matched it) gets no axes in the
predicted tile, only an orange ring at its projected centre and the word ``missed``.

Readable at small image sizes: each tile is the image scaled up so that its longer side is ``tile_size``
pixels (4x for 64 px images, nearest neighbour: the pixels the network saw; a 640x480 image stays 640x480
and a row is as high as its tiles), and the axes, rings and text are drawn on a
transparent layer ``SUPERSAMPLE`` times larger, downsampled with Lanczos (antialiased lines) and laid over
the images; axes are ``LINE_WIDTH`` output pixels wide.

The rotation errors come from the caller (``fastpose.training.tblog.predicted_rotations``, which uses
``fastpose.pose.metrics.rotation_error_deg``: the metric's own definition, y-axis rule for symmetric
classes included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

AXIS_COLOURS = ((235, 40, 40), (40, 205, 40), (60, 110, 255))  # x, y, z
MISSED_COLOUR = (255, 170, 0)  # orange: none of the axis colours
TEXT_COLOUR = (255, 255, 255)
CAPTIONS = ("ground truth", "predicted")
SUPERSAMPLE = 2
LINE_WIDTH = 3  # output pixels
MAX_TILE = 256


@dataclass(frozen=True)
class PanelLabel:
    """One text drawn on the panel: which sample row, ground-truth slot and column (0 ground truth,
    1 predicted), the text, and the output-pixel box it was drawn in (left, top, right, bottom)."""

    sample: int
    slot: int
    column: int
    text: str
    box: tuple[int, int, int, int]


@dataclass
class PosePanel:
    """The drawn panel (``image``, RGB) and where things are on it."""

    image: object  # PIL.Image.Image
    tile: int  # width of one tile, output pixels
    header: int  # height of the caption band above the first row
    captions: list[tuple[str, tuple[int, int, int, int]]] = field(default_factory=list)
    labels: list[PanelLabel] = field(default_factory=list)
    tile_height: int = 0  # height of one tile (a row); 0: as wide as high (square images)

    @property
    def row(self) -> int:
        return self.tile_height or self.tile

    def tile_box(self, sample: int, column: int) -> tuple[int, int, int, int]:
        x, y = column * self.tile, self.header + sample * self.row
        return x, y, x + self.tile, y + self.row

    def as_array(self):  # noqa: ANN201 - numpy (H, W, 3) uint8, what SummaryWriter.add_image takes as HWC
        import numpy as np

        return np.asarray(self.image)


def to_display(image: Tensor) -> Tensor:
    """(3,H,W) normalised image -> (3,H,W) in [0,1] by min-max per image (works for any normalisation)."""
    lo, hi = image.amin(), image.amax()
    return ((image - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)


def project(K: Tensor, points: Tensor) -> Tensor:
    """Pinhole projection of camera-space points (...,3) -> pixel coordinates (...,2) (u right, v down),
    continuous: pixel ``(u, v)`` covers ``[u, u+1) x [v, v+1)``."""
    uvw = points @ K.T
    return uvw[..., :2] / uvw[..., 2:].clamp_min(1e-6)


def axes_2d(K: Tensor, R: Tensor, t: Tensor, length: Tensor) -> Tensor:
    """Projected (origin, x tip, y tip, z tip) (N,4,2) of N objects: R (N,3,3), t (N,3), length (N,)."""
    tips = t[:, None, :] + R.transpose(1, 2) * length[:, None, None]  # row i = t + R[:, i] * L
    return project(K, torch.cat([t[:, None, :], tips], dim=1))


def tile_size(image_side: int) -> int:
    """Output side of one tile for images ``image_side`` pixels wide: 4x up to ``MAX_TILE``, never smaller
    than the image."""
    return max(image_side, min(MAX_TILE, 4 * image_side))


def _font(size: int):  # noqa: ANN202
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def pose_panel(batch: dict, pred_rot: Tensor, matched: Tensor, count: int,
               error_deg: Tensor | None = None) -> PosePanel:
    """The panel for the first ``count`` samples of ``batch`` (see the module docstring).

    ``pred_rot`` (B,M,3,3), ``matched`` (B,M) bool and ``error_deg`` (B,M) (NaN where unknown) are per
    ground-truth slot of the batch; only slots with ``inst_valid`` are drawn.
    """
    from PIL import Image, ImageDraw

    images = batch["image"]
    rows = min(count, images.shape[0])
    H, W = images.shape[-2:]
    scale = tile_size(max(H, W)) / max(H, W)
    tile, row = round(W * scale), round(H * scale)  # a tile is the image scaled; square images: tile == row
    s = SUPERSAMPLE
    header = max(16, max(tile, row) // 8)
    # The images at the output size (nearest: the network's pixels, which also compress well in the PNG),
    # everything drawn on a transparent layer SUPERSAMPLE times larger, downsampled and laid over them.
    base = Image.new("RGBA", (2 * tile, header + rows * row), (24, 24, 24, 255))
    big = Image.new("RGBA", (2 * tile * s, (header + rows * row) * s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(big)
    panel = PosePanel(image=None, tile=tile, header=header, tile_height=row if row != tile else 0)

    caption_font = _font(max(10, header * 2 // 3) * s)
    for column, caption in enumerate(CAPTIONS):
        x0, x1 = column * tile * s, (column + 1) * tile * s
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=caption_font)
        x = (x0 + x1 - (right - left)) / 2 - left
        y = (header * s - (bottom - top)) / 2 - top
        draw.text((x, y), caption, fill=TEXT_COLOUR, font=caption_font)
        panel.captions.append((caption, _out_box(draw.textbbox((x, y), caption, font=caption_font), s)))

    label_font = _font(max(9, max(tile, row) // 14) * s)
    width = LINE_WIDTH * s
    for b in range(rows):
        rgb = (to_display(images[b].detach().float().cpu()).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        picture = Image.fromarray(rgb).resize((tile, row), Image.Resampling.NEAREST)
        valid = batch["inst_valid"][b].cpu().bool()
        slots = valid.nonzero().flatten().tolist()
        K = batch["intrinsics"][b].detach().cpu().float()
        t = batch["inst_trans"][b].detach().cpu().float()
        length = 0.5 * batch["inst_size"][b].detach().cpu().float().amax(dim=-1).clamp_min(1e-3)
        classes = batch.get("inst_class")
        for column in (0, 1):
            ox, oy = column * tile * s, (header + b * row) * s
            base.paste(picture, (column * tile, header + b * row))

            def px(uv: Tensor) -> tuple[float, float]:  # continuous image coords -> supersampled PIL coords
                return ox + float(uv[0]) * (tile / W) * s - 0.5, oy + float(uv[1]) * (row / H) * s - 0.5

            rot = batch["inst_rot"][b] if column == 0 else pred_rot[b]
            pts = axes_2d(K, rot.detach().cpu().float(), t, length)
            for k in slots:
                origin = px(pts[k, 0])
                missed = column == 1 and not bool(matched[b, k])
                if missed:
                    r = min(tile, row) * s / 12
                    draw.ellipse([origin[0] - r, origin[1] - r, origin[0] + r, origin[1] + r],
                                 outline=MISSED_COLOUR, width=width)
                    text = "missed"
                else:
                    for axis in (2, 1, 0):  # z first, so x ends on top
                        draw.line([origin, px(pts[k, axis + 1])], fill=AXIS_COLOURS[axis], width=width)
                    if column == 0:
                        text = _class_name(classes, b, k)
                    else:
                        err = float(error_deg[b, k]) if error_deg is not None else math.nan
                        text = f"{err:.0f}°" if math.isfinite(err) else "?°"
                box = _place_label(draw, text, origin, label_font, (ox, oy, ox + tile * s, oy + row * s), s)
                draw.text(box[:2], text, fill=TEXT_COLOUR if not missed else MISSED_COLOUR, font=label_font,
                          stroke_width=max(1, s), stroke_fill=(0, 0, 0))
                panel.labels.append(PanelLabel(b, k, column, text,
                                               _out_box(draw.textbbox(box[:2], text, font=label_font), s)))
    base.alpha_composite(big.resize(base.size, Image.Resampling.LANCZOS))  # Pillow premultiplies alpha
    panel.image = base.convert("RGB")
    return panel


def _class_name(classes: Tensor | None, b: int, k: int) -> str:
    from fastpose.pose.data.synthetic import CLASSES

    if classes is None:
        return ""
    c = int(classes[b, k])
    return CLASSES[c - 1] if 1 <= c <= len(CLASSES) else str(c)


def _place_label(draw, text: str, origin: tuple[float, float], font, tile_box: tuple, s: int):  # noqa: ANN001, ANN202
    """Where to write ``text`` beside an object's origin: above and to the right, kept inside its tile."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    x = min(max(origin[0] + 3 * s, tile_box[0] + s), tile_box[2] - w - s) - left
    y = min(max(origin[1] - h - 4 * s, tile_box[1] + s), tile_box[3] - h - s) - top
    return x, y


def _out_box(box: tuple[float, float, float, float], s: int) -> tuple[int, int, int, int]:
    return tuple(int(round(v / s)) for v in box)  # type: ignore[return-value]
