"""Backbones (torchvision names, weight loading, refusals) and FastPoseNet outputs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fastpose.errors import FastposeError
from fastpose.pose.backbones import BACKBONES, build_backbone
from fastpose.pose.model import FastPoseNet
from fastpose.pose.translation import DEPTH_PRIOR, SIZE_PRIOR

# A few of torchvision's own parameter names and shapes, per architecture.
TORCHVISION_KEYS = {
    "resnet18": {"conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (64, 64, 3, 3),
                 "layer2.0.downsample.0.weight": (128, 64, 1, 1), "layer4.1.bn2.running_var": (512,),
                 "fc.weight": (1000, 512)},
    "resnet34": {"layer3.5.conv2.weight": (256, 256, 3, 3), "fc.bias": (1000,)},
    "resnet50": {"layer1.0.conv3.weight": (256, 64, 1, 1), "layer1.0.downsample.1.num_batches_tracked": (),
                 "fc.weight": (1000, 2048)},
    "resnext50_32x4d": {"layer1.0.conv1.weight": (128, 64, 1, 1), "layer1.0.conv2.weight": (128, 4, 3, 3),
                        "layer4.2.conv3.weight": (2048, 1024, 1, 1)},
}
TORCHVISION_COUNTS = {"resnet18": 122, "resnet34": 218, "resnet50": 320, "resnext50_32x4d": 320}


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_has_torchvision_names_and_shapes(name: str) -> None:
    sd = build_backbone(name).state_dict()
    assert len(sd) == TORCHVISION_COUNTS[name]  # entries in torchvision's state_dict, buffers included
    for key, shape in TORCHVISION_KEYS[name].items():
        assert tuple(sd[key].shape) == shape, key


def test_weights_file_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_backbone("resnet18")
    state = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
             for k, v in source.state_dict().items()}
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(state, path)
    model = FastPoseNet("resnet18", weights=path)
    assert torch.equal(model.encoder.state_dict()["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
    assert torch.equal(model.encoder.state_dict()["bn1.running_mean"], state["bn1.running_mean"])


def test_wrong_architecture_file_is_refused_naming_keys(tmp_path: Path) -> None:
    path = tmp_path / "resnet50.pth"
    torch.save(build_backbone("resnet50").state_dict(), path)
    with pytest.raises(FastposeError) as info:
        build_backbone("resnet18", weights=path)
    msg = str(info.value)
    assert "\n" not in msg and "does not fit resnet18" in msg
    assert "unexpected: layer1.0.conv3.weight" in msg  # first few named
    assert "shape mismatch: layer1.0.conv1.weight (64, 64, 1, 1) != (64, 64, 3, 3)" in msg
    assert "more)" in msg


def test_partial_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    sd = build_backbone("resnet18").state_dict()
    del sd["fc.weight"], sd["layer4.1.bn2.weight"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(FastposeError, match=r"2 missing: layer4\.1\.bn2\.weight, fc\.weight"):
        build_backbone("resnet18", weights=tmp_path / "partial.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(FastposeError, match="cannot read weights file"):
        build_backbone("resnet18", weights=tmp_path / "junk.pth")
    with pytest.raises(FastposeError, match="does not exist"):
        build_backbone("resnet18", weights=tmp_path / "nope.pth")
    with pytest.raises(FastposeError, match="unknown backbone"):
        build_backbone("vgg16")


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d"])
def test_fastposenet_output_shapes(name: str) -> None:
    model = FastPoseNet(name, num_classes=6, decoder_channels=32)
    out = model(torch.randn(2, 3, 64, 64))
    assert set(out) == {"mask_logits", "quaternion", "centre", "log_depth", "log_size"}
    assert out["mask_logits"].shape == (2, 7, 64, 64)
    assert out["quaternion"].shape == (2, 24, 64, 64)
    assert out["centre"].shape == (2, 2, 64, 64) and out["log_depth"].shape == (2, 1, 64, 64)
    assert out["log_size"].shape == (2, 18, 64, 64)
    out = FastPoseNet("resnet18", num_classes=3)(torch.randn(1, 3, 96, 128))
    assert out["mask_logits"].shape == (1, 4, 96, 128) and out["quaternion"].shape == (1, 12, 96, 128)


def test_depth_branch_and_the_shared_depth_channel() -> None:
    """The default log-depth has a decoder branch of its own; ``shared`` is the earlier single channel."""
    torch.manual_seed(0)
    branch = FastPoseNet("resnet18", decoder_channels=16)
    torch.manual_seed(0)
    shared = FastPoseNet("resnet18", decoder_channels=16, depth_head="shared")
    assert any(k.startswith("depth_branch.") for k in branch.state_dict())
    assert not any(k.startswith("depth_branch.") for k in shared.state_dict())
    assert branch.geometry_head.out_channels == 2 + 18 and shared.geometry_head.out_channels == 3 + 18
    image = torch.randn(2, 3, 64, 64)
    for model in (branch.eval(), shared.eval()):
        out = model(image)
        assert out["log_depth"].shape == (2, 1, 64, 64) and out["log_size"].shape == (2, 18, 64, 64)
        # initial outputs: the depth and size priors
        assert torch.allclose(out["log_depth"].mean(), torch.tensor(math.log(DEPTH_PRIOR)), atol=0.3)
        assert torch.allclose(out["log_size"].mean(), torch.tensor(math.log(SIZE_PRIOR)), atol=0.3)
    # the depth branch reads the stride-4 features: its output moves with the image
    out2 = branch(torch.randn(2, 3, 64, 64))
    assert not torch.equal(out2["log_depth"], branch(image)["log_depth"])
    with pytest.raises(ValueError, match="depth_head must be"):
        FastPoseNet("resnet18", depth_head="deep")


@pytest.mark.parametrize("rotation,key,width", [("6d", "rot6d", 6), ("9d", "rot9d", 9)])
def test_fastposenet_rotation_heads(rotation: str, key: str, width: int) -> None:
    torch.manual_seed(0)
    quat = FastPoseNet("resnet18", decoder_channels=16)
    torch.manual_seed(0)
    model = FastPoseNet("resnet18", decoder_channels=16, rotation=rotation)
    # same parameters but the head's, drawn from the same random stream up to it
    mine, theirs = model.state_dict(), quat.state_dict()
    assert set(mine) - set(theirs) == {"rot_head.weight", "rot_head.bias"}
    assert set(theirs) - set(mine) == {"quat_head.weight", "quat_head.bias"}
    assert all(torch.equal(mine[k], theirs[k]) for k in mine
               if k in theirs and not k.startswith(("geometry_head", "depth_branch")))
    out = model(torch.randn(2, 3, 64, 64))
    assert set(out) == {"mask_logits", key, "centre", "log_depth", "log_size"} and out[key].shape == (2, 6 * width, 64, 64)
    with pytest.raises(ValueError, match="rotation must be one of"):
        FastPoseNet("resnet18", rotation="euler")


def test_fastposenet_default_stops_at_stride_16_and_leaves_out_layer4_and_fc() -> None:
    torch.manual_seed(0)
    model = FastPoseNet("resnet18", decoder_channels=16)
    # torchvision's encoder entries except the parts never run: layer4 (stride 32) and the classifier fc
    full = set(build_backbone("resnet18").state_dict())
    kept = {k[len("encoder."):] for k in model.state_dict() if k.startswith("encoder.")}
    assert kept == {k for k in full if not k.startswith(("layer4.", "fc."))}
    assert not hasattr(model.encoder, "layer4") and not hasattr(model.encoder, "fc")
    out = model(torch.randn(2, 3, 64, 64))
    assert all(v.is_contiguous() for v in out.values())
    sum(v.mean() for v in out.values()).backward()
    for name, p in model.named_parameters():  # nothing frozen is left: every parameter learns
        assert p.requires_grad and p.grad is not None, name
    deep = FastPoseNet("resnet18", decoder_channels=16, deepest_stride=32)
    assert {k[len("encoder."):] for k in deep.state_dict() if k.startswith("encoder.")} == \
        {k for k in full if not k.startswith("fc.")}
    assert all(p.requires_grad for p in deep.encoder.layer4.parameters())
    assert len(deep.lateral) == 4 and len(model.lateral) == 3
    out = deep(torch.randn(1, 3, 64, 96))
    assert out["mask_logits"].shape == (1, 7, 64, 96)
    out["quaternion"].sum().backward()
    assert deep.encoder.layer4[1].conv2.weight.grad is not None
    with pytest.raises(ValueError, match="deepest_stride"):
        FastPoseNet("resnet18", deepest_stride=8)
    with pytest.raises(RuntimeError, match="without layer4 and fc"):
        model.encoder(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_leaving_parts_out_draws_the_same_random_numbers(name: str) -> None:
    """Reference: the full torchvision-layout network under the same seed. Every kept entry is identical and
    the next draw is too, so the decoder (built after the encoder) and the data order do not change."""
    torch.manual_seed(3)
    full = build_backbone(name).state_dict()
    after_full = torch.rand(8)
    for stages, classifier in ((3, False), (3, True), (4, False)):
        torch.manual_seed(3)
        part = build_backbone(name, stages=stages, classifier=classifier).state_dict()
        assert torch.equal(torch.rand(8), after_full), (stages, classifier)
        assert set(part) < set(full)
        assert all(torch.equal(part[k], full[k]) for k in part), (stages, classifier)


def test_full_imagenet_file_loads_into_the_default_model_and_used_keys_are_checked(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
             for k, v in build_backbone("resnet18").state_dict().items()}  # torchvision's full file
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(state, path)
    model = FastPoseNet("resnet18", weights=path)  # stride 16: layer4.* and fc.* ignored
    encoder = model.encoder.state_dict()
    assert encoder and all(torch.equal(v, state[k]) for k, v in encoder.items())
    deep = FastPoseNet("resnet18", weights=path, deepest_stride=32)
    assert torch.equal(deep.encoder.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])

    # A file without layer4 serves the default model, not the one that runs layer4.
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4.")}, tmp_path / "no_layer4.pth")
    FastPoseNet("resnet18", weights=tmp_path / "no_layer4.pth")
    with pytest.raises(FastposeError, match=r"missing: layer4\.0\.conv1\.weight"):
        FastPoseNet("resnet18", weights=tmp_path / "no_layer4.pth", deepest_stride=32)
    # Every used entry is checked: one missing, one of the wrong shape, one unknown.
    broken = dict(state)
    del broken["layer3.1.bn2.weight"]
    broken["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    broken["layer3.9.conv1.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(FastposeError) as info:
        FastPoseNet("resnet18", weights=tmp_path / "broken.pth")
    msg = str(info.value)
    assert "1 missing: layer3.1.bn2.weight" in msg and "1 unexpected: layer3.9.conv1.weight" in msg
    assert "layer1.0.conv1.weight (64, 64, 1, 1) != (64, 64, 3, 3)" in msg


def test_a_state_dict_that_still_holds_layer4_and_fc_loads() -> None:
    """Checkpoints written before layer4 and fc were left out hold their (frozen, unused) entries."""
    torch.manual_seed(0)
    model = FastPoseNet("resnet18", decoder_channels=16)
    old = {**{f"encoder.{k}": v for k, v in build_backbone("resnet18").state_dict().items()},
           **{k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.state_dict().items()
              if not k.startswith("encoder.")}}
    old.update({k: torch.randn_like(v) for k, v in old.items() if k == "encoder.conv1.weight"})
    fresh = FastPoseNet("resnet18", decoder_channels=16)
    fresh.load_state_dict(old)  # strict: layer4/fc entries dropped, everything else must match
    assert torch.equal(fresh.encoder.conv1.weight, old["encoder.conv1.weight"])
    assert torch.equal(fresh.quat_head.weight, old["quat_head.weight"])
    del old["encoder.layer3.0.conv1.weight"]
    with pytest.raises(RuntimeError, match="Missing key"):
        fresh.load_state_dict(old)


def test_a_checkpoint_from_before_the_depth_branch_loads_with_the_shared_channel(tmp_path: Path) -> None:
    """Configs fastpose saved before ``model.depth_head`` existed describe the shared channel (``from_saved``);
    a user's partial config gets today's default (``from_dict``)."""
    from fastpose.config import RunConfig
    from fastpose.training.evaluate import load_checkpoint

    assert RunConfig.from_dict({"model": {"backbone": "resnet18"}}).model.depth_head == "branch"
    assert RunConfig.from_saved({"model": {"backbone": "resnet18"}}).model.depth_head == "shared"
    assert RunConfig.from_saved({"model": {"depth_head": "branch"}}).model.depth_head == "branch"
    saved = RunConfig().to_dict()
    del saved["model"]["depth_head"]
    torch.manual_seed(0)
    old = FastPoseNet("resnet18", decoder_channels=saved["model"]["decoder_channels"], depth_head="shared").eval()
    path = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": saved, "state_dict": {f"model.{k}": v for k, v in old.state_dict().items()}}, path)
    model, config, has_translation = load_checkpoint(path)
    assert config.model.depth_head == "shared" and has_translation
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(image)["log_depth"], old(image)["log_depth"])
