"""A tiny model overfits a handful of synthetic images with the aggregated QLoss (plain PyTorch, CPU)."""

from __future__ import annotations

import pytest
import torch

from fastpose.pose.aggregate import evaluate_batch, gt_instance_quaternions
from fastpose.pose.data.synthetic import SyntheticPoseDataset
from fastpose.pose.losses import build_loss
from fastpose.pose.evaluation import PoseEvaluation, detect
from fastpose.pose.metrics import rotation_error_deg
from fastpose.pose.model import FastPoseNet


def _gt_error(model: FastPoseNet, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        inst = gt_instance_quaternions(model(batch["image"]), batch)
    return rotation_error_deg(inst["pred"], inst["gt"], inst["class_id"])


@pytest.mark.slow
def test_tiny_model_overfits_with_qloss() -> None:
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds = SyntheticPoseDataset(6, image_size=64, seed=0)
        batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
        model = FastPoseNet("resnet18", decoder_channels=32)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = build_loss("qloss")
        model.eval()  # BatchNorm in eval mode for the before/after measurement only
        before = _gt_error(model, batch).mean()
        model.train()
        for _ in range(40):
            terms = loss_fn(model(batch["image"]), batch)
            opt.zero_grad()
            terms["loss"].backward()
            opt.step()
        assert torch.isfinite(terms["loss"])
        after = _gt_error(model, batch).mean()  # train-mode BatchNorm: the statistics it was fitted with
        assert after < before / 5, (float(before), float(after))
        # the whole evaluation path runs on real model output
        out = model(batch["image"])
        ev = evaluate_batch(out, batch)
        assert ev["matched"].numel() == int(batch["inst_valid"].sum())
        metric = PoseEvaluation(use_3d="translation" in out)
        metric.update(detect(out, batch["intrinsics"]), batch)
        values = metric.compute()
        assert 0 <= float(values["miss_rate"]) <= 1 and 0 <= float(values["10deg"]) <= 1
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("rotation,loss", [("6d", "geodesic"), ("9d", "chordal")])
def test_matrix_heads_train_a_few_steps_and_evaluate(rotation: str, loss: str) -> None:
    """Two real steps per representation on 4 tiny images: finite terms, gradients reaching the encoder and
    the rotation head, the instance loss going down on the batch it fits, and the evaluation path running."""
    torch.manual_seed(0)
    ds = SyntheticPoseDataset(4, image_size=32, seed=0, rotations="tabletop")
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    model = FastPoseNet("resnet18", decoder_channels=16, rotation=rotation)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = build_loss(loss, rotation=rotation, trans_weight=0.0, size_weight=0.0)  # the rotation term's steps
    rot = []
    for _ in range(3):
        terms = loss_fn(model(batch["image"]), batch)
        rot.append(float(terms["loss_rot"].detach()))
        if len(rot) == 3:
            break
        opt.zero_grad()
        terms["loss"].backward()
        assert all(torch.isfinite(v) for v in terms.values())
        for p in (model.rot_head.weight, model.encoder.conv1.weight):
            assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
        opt.step()
    assert rot[2] < rot[0], rot
    out = model(batch["image"])
    det = detect(out, batch["intrinsics"], min_pixels=1)
    assert det["rot"].shape == (len(det["class_id"]), 3, 3) and det["quat"].shape == (len(det["class_id"]), 4)
    metric = PoseEvaluation()
    metric.update(det, batch)
    values = metric.compute()
    assert 0 <= float(values["miss_rate"]) <= 1 and 0 <= float(values["10deg"]) <= 1
