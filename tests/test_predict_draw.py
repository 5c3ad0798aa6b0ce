"""The predict overlay: a known box lands where the camera projects it, on an overlay of at least 512 px;
intrinsics follow the letterbox (the whole image, scaled to fit and padded)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fastpose.training.predict import camera, draw_overlay, parse_intrinsics, prepare
from fastpose.errors import FastposeError


def test_box_edges_are_drawn_at_the_projected_corners(tmp_path) -> None:
    image = Image.new("RGB", (64, 48), (0, 0, 0))
    K = np.array([[64.0, 0, 32], [0, 64.0, 24], [0, 0, 1]])
    obj = {"class": "camera", "score": 0.9, "quaternion": [0, 0, 0, 1], "translation": [0, 0, 1.0],
           "size": [0.5, 0.25, 0.01]}
    assert draw_overlay(image, [obj], K, tmp_path / "o.png") == (512, 384)  # 8x: at least 512 px
    out = np.asarray(Image.open(tmp_path / "o.png")).astype(int)
    # the box's faces span u = 32 +- 16 and v = 24 +- 8 (continuous): the top edge lies on v = 16, overlay row
    # 128 at 8x, from column 16 to 48 (128 to 384)
    edge = out[126:131, 160:352].sum(-1).max(0)
    assert edge.min() > 100  # on the edge: coloured all along
    assert edge.std() < 0.1 * edge.mean()  # an even line, not a dotted one
    assert out[270:, :].sum() == 0 and out[140:250, :100].sum() == 0  # below and left of the box: untouched
    # the label sits above the box's top-left corner, light text on a dark box, 16 px high at 384 rows
    label = out[:126, 120:260]
    assert (label.sum(-1) > 200).sum() > 50 and ((label.sum(-1) > 0) & (label.sum(-1) < 90)).sum() > 200


def test_intrinsics_follow_the_letterbox() -> None:
    image = Image.new("RGB", (80, 48), (200, 10, 10))
    K = camera(80, 48, parse_intrinsics("80,80,39.5,23.5"))
    assert np.allclose(K, [[80.0, 0, 40], [0, 80, 24], [0, 0, 1]])  # OpenCV's cx, cy + 0.5
    x, K_net, frame = prepare(image, (32, 32), K)
    assert x.shape == (3, 32, 32)
    # the whole image, scaled by 32/80 (to 32 x 19 rows), centred with 6 rows of padding above
    assert frame.inner == (19, 32) and frame.pad == (0, 6) and frame.crop == (0, 0, 80, 48)
    sx, sy = 32 / 80, 19 / 48
    assert torch.allclose(K_net, torch.tensor([[80 * sx, 0, 40 * sx], [0, 80 * sy, 24 * sy + 6], [0, 0, 1]]), atol=1e-5)
    # the padding is the mean colour (0 after normalising), the image is the image
    assert x[:, :6].abs().max() < 1e-6 and x[:, 25:].abs().max() < 1e-6 and x[0, 6:25].min() > 1.0
    # a rectangular run (H, W) = (64, 96), as configs with a WIDTHxHEIGHT size give: 96/80 scales the whole
    # width in, 58 rows, 3 rows of padding above
    x, K_net, frame = prepare(image, (64, 96), K)
    assert x.shape == (3, 64, 96) and frame.inner == (58, 96) and frame.pad == (0, 3)
    with pytest.raises(FastposeError):
        parse_intrinsics("1,2,nan,4")


def test_without_intrinsics_the_synthetic_camera_of_the_image_is_assumed() -> None:
    """f = the shorter side (not the longer): for 640x480, fx = fy = 480, the principal point at the centre."""
    assert np.allclose(camera(640, 480, None), [[480.0, 0, 320], [0, 480, 240], [0, 0, 1]])
    assert np.allclose(camera(48, 64, None), [[48.0, 0, 24], [0, 48, 32], [0, 0, 1]])
