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
