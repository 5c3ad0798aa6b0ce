"""FastPoseNet: a ResNet encoder, an FPN-style decoder, a class-mask head and a per-class quaternion head.

As in FastPoseCNN, the quaternion head predicts one quaternion field per class (``4 * C`` channels); the
field of the pixel's class is the one used (aggregation and losses pick it). Outputs are raw (the
quaternions are not normalised) and at the input resolution::

    out = FastPoseNet("resnet18")(image)      # image (B, 3, H, W), H and W multiples of 32
    out["mask_logits"]   # (B, C + 1, H, W): background + C classes
    out["quaternion"]    # (B, 4 * C, H, W): channels 4c..4c+3 are (x, y, z, w) for class c + 1

Decoder: lateral 1x1 convolutions on the encoder's stride 4..32 maps, top-down nearest upsampling and
sums (Lin et al. 2017), a 3x3 smoothing at stride 4, a 1x1 reduction to half the width, one more skip from the
stride-2 stem and a 3x3 convolution at stride 2; both heads are 1x1 convolutions there, bilinearly
upsampled to the input size.
Kept light so a resnet18 at 64x64 trains in CPU-minutes.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from fastpose.pose.backbones import build_backbone


def _conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class FastPoseNet(nn.Module):
    def __init__(self, backbone: str = "resnet18", num_classes: int = 6, weights: str | Path | None = None,
                 decoder_channels: int = 64) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.encoder = build_backbone(backbone, weights)
        ch, d = self.encoder.channels, decoder_channels
        self.lateral = nn.ModuleList([nn.Conv2d(c, d, 1) for c in ch[1:]])  # strides 4, 8, 16, 32
        self.smooth = _conv_bn_relu(d, d)
        h = max(d // 2, 8)  # the stride-2 level is the expensive one: half the width
        self.reduce = nn.Conv2d(d, h, 1)
        self.stem_lateral = nn.Conv2d(ch[0], h, 1)
        self.fuse = _conv_bn_relu(h, h)
        self.mask_head = nn.Conv2d(h, num_classes + 1, 1)
        self.quat_head = nn.Conv2d(h, 4 * num_classes, 1)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        h, w = image.shape[-2:]
        c1, *cs = self.encoder.features(image)
        p = self.lateral[-1](cs[-1])
        for lat, c in zip(reversed(self.lateral[:-1]), reversed(cs[:-1])):
            p = lat(c) + F.interpolate(p, size=c.shape[-2:], mode="nearest")
        p = self.reduce(self.smooth(p))
        p = self.fuse(self.stem_lateral(c1) + F.interpolate(p, size=c1.shape[-2:], mode="nearest"))

        def up(x: Tensor) -> Tensor:
            return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)

        return {"mask_logits": up(self.mask_head(p)), "quaternion": up(self.quat_head(p))}
