"""FastPoseNet: a ResNet encoder, an FPN-style decoder, a class-mask head and a per-class rotation head.

As in FastPoseCNN, the rotation head predicts one rotation field per class (``k * C`` channels, ``k`` the
representation's width: 4 for ``rotation="quaternion"``, 6 for ``"6d"``, 9 for ``"9d"``; see
``fastpose.pose.rotations``); the field of the pixel's class is the one used (aggregation and losses pick
it). Outputs are raw (not normalised or projected) and at the input resolution::

    out = FastPoseNet("resnet18")(image)      # image (B, 3, H, W), H and W multiples of 32
    out["mask_logits"]   # (B, C + 1, H, W): background + C classes
    out["quaternion"]    # (B, 4 * C, H, W): channels 4c..4c+3 are (x, y, z, w) for class c + 1
                         # (rotation="6d": out["rot6d"] (B, 6C, H, W), channels 6c..6c+5 = (a1, a2);
                         #  rotation="9d": out["rot9d"] (B, 9C, H, W), channels 9c..9c+8 = M row-major)
    out["centre"]        # (B, 2, H, W): offset to the object's projected centre (fastpose.pose.translation)
    out["log_depth"]     # (B, 1, H, W): log z of the object's centre (metres)
    out["log_size"]      # (B, 3 * C, H, W): log box extents (metres), channels 3c..3c+2 for class c + 1

Decoder: lateral 1x1 convolutions on the encoder's stride 4..16 maps (``deepest_stride=32`` adds the
stride-32 stage), top-down nearest upsampling and sums (Lin et al. 2017), a 3x3 smoothing at stride 4, a
1x1 reduction to half the width, one more skip from the stride-2 stem and a 3x3 convolution at stride 2;
all heads are 1x1 convolutions there, bilinearly upsampled to the input size, except the log-depth head
(``depth_head="branch"``, the default): two 3x3 convolutions of its own on the stride-4 features, then a 1x1,
as FastPoseCNN gives depth a decoder of its own. Depth is the one output that needs the object's apparent
size; as one 1x1 channel beside the others (``depth_head="shared"``, every run before the branch) it hardly
learned: on the demo model its per-instance log-depth had a standard deviation of 0.03 against the truth's
0.15 (correlation 0.25), a median error of 13 % at 5 and at 15 epochs, no better than a class-mean depth.

Kept light so a resnet18 at 64x64 trains in CPU-minutes:
- By default the encoder stops at stride 16. At 64x64 the stride-16 map (4x4) already sees the whole
  image, while ``layer4`` holds 75% of a resnet18's weights (the optimizer's cost) and a quarter of its
  convolution work on a 2x2 map. It is not built (nor is the ImageNet classifier ``fc``, never used), so
  neither is in the state_dict or in checkpoints; the kept parameters have torchvision's names and a full
  ImageNet file loads (its ``layer4``/``fc`` entries ignored). The random initialisation is the one the
  full network gets under the same seed (see ``fastpose.pose.backbones.ResNet``). Pass
  ``deepest_stride=32`` for large images.
- The network runs in channels-last memory format (faster convolutions and BatchNorm with oneDNN on
  CPU); the outputs are ordinary contiguous tensors.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastpose.config import DEPTH_HEADS
from fastpose.pose.backbones import build_backbone
from fastpose.pose.rotations import FIELD_KEYS, ROTATION_CHANNELS
from fastpose.pose.translation import init_heads


def _conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class FastPoseNet(nn.Module):
    predicts_translation = True  # outputs centre / log_depth / log_size (the evaluation's 3D metrics need them)

    def __init__(self, backbone: str = "resnet18", num_classes: int = 6, weights: str | Path | None = None,
                 decoder_channels: int = 64, *, deepest_stride: int = 16, rotation: str = "quaternion",
                 depth_head: str = "branch") -> None:
        super().__init__()
        if deepest_stride not in (16, 32):
            raise ValueError(f"deepest_stride must be 16 or 32, not {deepest_stride!r}")
        if rotation not in ROTATION_CHANNELS:
            raise ValueError(f"rotation must be one of {', '.join(ROTATION_CHANNELS)}, not {rotation!r}")
        if depth_head not in DEPTH_HEADS:
            raise ValueError(f"depth_head must be {' or '.join(DEPTH_HEADS)}, not {depth_head!r}")
        self.num_classes, self.rotation, self.depth_head = num_classes, rotation, depth_head
        self.levels = 4 if deepest_stride == 32 else 3  # encoder stages after the stem that are used
        self.encoder = build_backbone(backbone, weights, stages=self.levels, classifier=False)
        ch, d = self.encoder.channels, decoder_channels
        self.lateral = nn.ModuleList([nn.Conv2d(c, d, 1) for c in ch[1:1 + self.levels]])  # strides 4..16|32
        self.smooth = _conv_bn_relu(d, d)
        h = max(d // 2, 8)  # the stride-2 level is the expensive one: half the width
        self.reduce = nn.Conv2d(d, h, 1)
        self.stem_lateral = nn.Conv2d(ch[0], h, 1)
        self.fuse = _conv_bn_relu(h, h)
        self.mask_head = nn.Conv2d(h, num_classes + 1, 1)
        # The quaternion head keeps its name (and so every existing checkpoint's state_dict keys).
        rot_head = nn.Conv2d(h, ROTATION_CHANNELS[rotation] * num_classes, 1)
        if rotation == "quaternion":
            self.quat_head = rot_head
        else:
            self.rot_head = rot_head
        # Channels: centre offset (2), log-depth (1, shared only), log-size (3C).
        shared = depth_head == "shared"
        self.geometry_head = nn.Conv2d(h, 2 + shared + 3 * num_classes, 1)
        if shared:
            init_heads(self.geometry_head.bias[2:3], self.geometry_head.bias[3:])
        else:
            self.depth_branch = nn.Sequential(_conv_bn_relu(d, d), _conv_bn_relu(d, d), nn.Conv2d(d, 1, 1))
            init_heads(self.depth_branch[-1].bias, self.geometry_head.bias[2:])
        self.to(memory_format=torch.channels_last)

    def features(self, image: Tensor) -> list[Tensor]:
        """The encoder maps used: stride 2 (stem), then strides 4, 8, 16 (and 32)."""
        return self.encoder.features(image)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        h, w = image.shape[-2:]
        c1, *cs = self.features(image.contiguous(memory_format=torch.channels_last))
        p = self.lateral[-1](cs[-1])
        for lat, c in zip(reversed(self.lateral[:-1]), reversed(cs[:-1])):
            p = lat(c) + F.interpolate(p, size=c.shape[-2:], mode="nearest")
        p = self.smooth(p)
        depth = None if self.depth_head == "shared" else self.depth_branch(p)  # stride 4
        p = self.reduce(p)
        p = self.fuse(self.stem_lateral(c1) + F.interpolate(p, size=c1.shape[-2:], mode="nearest"))

        def up(x: Tensor) -> Tensor:  # back to the ordinary layout at stride 2, where it is cheap
            return F.interpolate(x.contiguous(), size=(h, w), mode="bilinear", align_corners=False)

        geometry = up(self.geometry_head(p))
        rot = self.quat_head(p) if self.rotation == "quaternion" else self.rot_head(p)
        k = 3 if depth is None else 2  # where log-size starts
        return {"mask_logits": up(self.mask_head(p)), FIELD_KEYS[self.rotation]: up(rot),
                "centre": geometry[:, :2].contiguous(),
                "log_depth": geometry[:, 2:3].contiguous() if depth is None else up(depth),
                "log_size": geometry[:, k:].contiguous()}
