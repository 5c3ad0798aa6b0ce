"""ResNet encoders in plain torch, with torchvision's exact parameter names.

``resnet18``, ``resnet34``, ``resnet50`` and ``resnext50_32x4d`` follow He et al. 2016 and Xie et al. 2017
as torchvision builds them (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``...),
so a torchvision ImageNet ``state_dict`` saved with ``torch.save`` loads with ``load_state_dict`` as is.

The pose model uses the feature maps only, so it builds the encoder without the classifier
(``classifier=False``: no ``avgpool``/``fc``) and, at its default stride 16, without ``layer4``
(``stages=3``). Parts left out are not in the state_dict (nor in checkpoints); a full torchvision file still
loads (``load_weights`` ignores the keys of the parts left out and checks every key that is used), and so
does an old checkpoint that still holds them (``load_state_dict`` drops those keys).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fastpose.errors import FastposeError


def _conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = _conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride, groups)  # stride on the 3x3 (torchvision's "v1.5")
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """torchvision's ResNet layout; ``features(x)`` returns the maps at strides 2, 4, 8, 16 (and 32).

    ``stages=3`` leaves out ``layer4`` (stride 32) and ``classifier=False`` leaves out ``avgpool`` and ``fc``.
    The initialisation draws the same random numbers in the same order whatever is left out (the parts left
    out are built and initialised, then dropped), so under one seed every part that is kept gets the same
    weights as in the full network, and every later draw (the decoder's, the data order) is unchanged.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], groups: int = 1,
                 width_per_group: int = 64, num_classes: int = 1000, *, stages: int = 4,
                 classifier: bool = True) -> None:
        super().__init__()
        if stages not in (3, 4):
            raise ValueError(f"stages must be 3 or 4, not {stages!r}")
        self.inplanes, self.groups, self.base_width = 64, groups, width_per_group
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        layer4 = self._make_layer(block, 512, layers[3], stride=2)
        fc = nn.Linear(512 * block.expansion, num_classes)  # constructed in torchvision's order: same draws
        dropped: list[nn.Module] = []
        if stages == 4:
            self.layer4 = layer4
        else:
            dropped.append(layer4)
        if classifier:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = fc
        else:
            dropped.append(fc)
        self.stages, self.classifier = stages, classifier
        self.left_out = tuple(name for name, keep in (("layer4", stages == 4), ("fc", classifier)) if not keep)
        self.channels = [64] + [c * block.expansion for c in (64, 128, 256, 512)]
        # The full network's order: every conv of the kept stages, then layer4's (fc has no conv).
        for m in itertools.chain(self.modules(), *(d.modules() for d in dropped)):
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.register_load_state_dict_pre_hook(_drop_left_out_keys)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x: Tensor) -> list[Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        maps = [x]
        x = self.maxpool(x)
        for layer in (self.layer1, self.layer2, self.layer3, getattr(self, "layer4", None))[:self.stages]:
            x = layer(x)
            maps.append(x)
        return maps

    def forward(self, x: Tensor) -> Tensor:  # the classifier, as torchvision's (unused by the pose model)
        if self.left_out:
            raise RuntimeError(f"this ResNet was built without {' and '.join(self.left_out)}: use features()")
        return self.fc(torch.flatten(self.avgpool(self.features(x)[-1]), 1))


def _drop_left_out_keys(module: ResNet, state_dict: dict, prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: entries of parts this ResNet left out are dropped, not "unexpected"
    (a full torchvision state_dict, or a checkpoint written before those parts were left out, loads)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if key[len(prefix):].split(".", 1)[0] in module.left_out:
            del state_dict[key]


_ARCHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], {}),
    "resnet34": (BasicBlock, [3, 4, 6, 3], {}),
    "resnet50": (Bottleneck, [3, 4, 6, 3], {}),
    "resnext50_32x4d": (Bottleneck, [3, 4, 6, 3], {"groups": 32, "width_per_group": 4}),
}
BACKBONES = tuple(_ARCHS)


def build_backbone(name: str, weights: str | Path | None = None, *, stages: int = 4,
                   classifier: bool = True) -> ResNet:
    """A ResNet by torchvision name; ``weights`` is a ``torch.save``d state_dict (e.g. torchvision's ImageNet).

    ``stages=3`` leaves out ``layer4``, ``classifier=False`` leaves out ``fc`` (see ``ResNet``); the weights
    file is the full network's either way.
    """
    if name not in _ARCHS:
        raise FastposeError(f"unknown backbone {name!r}; choose one of: {', '.join(_ARCHS)}")
    block, layers, kw = _ARCHS[name]
    model = ResNet(block, layers, **kw, stages=stages, classifier=classifier)
    if weights is not None:
        load_weights(model, weights, name)
    return model


def load_weights(model: nn.Module, path: str | Path, arch: str = "model") -> None:
    """Load a state_dict file strictly; a mismatch raises FastposeError naming the first offending keys.

    Every entry ``model`` has must be in the file with its shape, and the file may hold nothing else, except
    the entries of the parts ``model`` left out (``model.left_out``, e.g. ``layer4``, ``fc``), which are ignored.
    """
    from fastpose.pose.checkpoint import load_torch_file, state_mismatch

    state = load_torch_file(path, "weights file")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FastposeError(f"weights file {str(path)!r} does not hold a state_dict of tensors")
    left_out = tuple(f"{part}." for part in getattr(model, "left_out", ()))
    state = {k: v for k, v in state.items() if not k.startswith(left_out)} if left_out else state
    parts = state_mismatch(model, state)
    if parts:
        raise FastposeError(f"weights file {str(path)!r} does not fit {arch}: " + "; ".join(parts))
    model.load_state_dict(state)
