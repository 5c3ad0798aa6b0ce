"""The predict overlay: a known box lands where the camera projects it; intrinsics follow crop and resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fastpose.training.predict import draw_overlay, parse_intrinsics, prepare
from fastpose.errors import FastposeError


def test_box_edges_are_drawn_at_the_projected_corners(tmp_path) -> None:
    image = Image.new("RGB", (64, 48), (0, 0, 0))
    K = np.array([[64.0, 0, 32], [0, 64.0, 24], [0, 0, 1]])
    obj = {"class": "camera", "score": 0.9, "quaternion": [0, 0, 0, 1], "translation": [0, 0, 1.0],
           "size": [0.5, 0.25, 0.01]}
    draw_overlay(image, [obj], K, tmp_path / "o.png")
    out = np.asarray(Image.open(tmp_path / "o.png")).astype(int)
    # the box's faces span u = 32 +- 16 and v = 24 +- 8 (continuous): the top edge lies on v = 16, the boundary
    # of pixel rows 15 and 16, from column 16 to 48
    edge = out[15:17, 20:44].sum(-1).max(0)
    assert edge.min() > 100  # on the edge: coloured all along
    assert edge.std() < 0.1 * edge.mean()  # an even line, not a dotted one
    assert out[36:, :].sum() == 0 and out[18:30, :12].sum() == 0  # below and left of the box: untouched


def test_intrinsics_follow_the_crop_and_resize() -> None:
    image = Image.new("RGB", (80, 48))
    x, K_net, K = prepare(image, 32, parse_intrinsics("80,80,39.5,23.5"))
    assert x.shape == (3, 32, 32)
    assert torch.allclose(K, torch.tensor([[80.0, 0, 40], [0, 80, 24], [0, 0, 1]]))
    # crop 48x48 from x = 16, then scale 32/48: a point projecting to the crop's centre stays there
    assert torch.allclose(K_net, torch.tensor([[80 * 2 / 3, 0, 16.0], [0, 80 * 2 / 3, 16.0], [0, 0, 1]]), atol=1e-5)
    with pytest.raises(FastposeError):
        parse_intrinsics("1,2,nan,4")
