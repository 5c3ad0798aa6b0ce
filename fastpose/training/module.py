"""The LightningModule: receives the plain ``FastPoseNet``, one shared step for train and validation.

Logged names (``docs/ARCHITECTURE.md``): ``train/loss`` and ``train/loss_<term>`` (epoch means; every
step's values go to TensorBoard as ``train_step/<term>`` through ``fastpose.training.tblog.StepLosses``),
``val/loss``, and every key of ``fastpose.pose.evaluation.PoseEvaluation`` under ``val/`` (NOCS-standard
mean APs such as ``val/10deg_5cm``, per class ``val/10deg_5cm/mug``, ``val/miss_rate``,
``val/false_positive_rate``, ``val/rot_err_median``, ``val/trans_err_median_cm``).
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from fastpose.config import RunConfig
from fastpose.faults import TERMS, apply_faults, on_checkpoint_save, on_train_step, parse_faults



class DivergedError(RuntimeError):
    """A loss term became NaN or inf: the run stops as ``diverged`` (never silently skips the batch)."""

    def __init__(self, term: str, value: float, epoch: int, step: int) -> None:
        super().__init__(f"{term} is {value} at epoch {epoch}, step {step}")
        self.term, self.value, self.epoch, self.step = term, value, epoch, step


def build_model(config: RunConfig) -> nn.Module:
    from fastpose.pose.model import FastPoseNet

    m = config.model
    return FastPoseNet(
        backbone=m.backbone, num_classes=6, weights=m.weights, decoder_channels=m.decoder_channels,
        rotation=m.rotation, depth_head=m.depth_head,
    )


def build_loss_fn(config: RunConfig):
    from fastpose.pose.losses import build_loss

    l = config.loss
    return build_loss(l.name, eps=l.eps, mask_weight=l.mask_weight, rot_weight=l.rot_weight,
                      trans_weight=l.trans_weight, size_weight=l.size_weight, rotation=config.model.rotation)


def cosine_with_warmup(total_steps: int, warmup_steps: int):
    """LR factor per optimizer step: linear warm-up, then cosine to 0 at ``total_steps``.

    A plain function (not a closure stored in the scheduler state), so a resumed run with more epochs
    follows the new schedule from the restored step count.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class PoseModule(pl.LightningModule):
    def __init__(self, model: nn.Module, config: RunConfig) -> None:
        super().__init__()
        from fastpose.pose.evaluation import PoseEvaluation

        # The whole RunConfig (a plain dict) goes into hparams.yaml and every checkpoint.
        self.save_hyperparameters(config.to_dict())
        self.config = config
        self.model = model
        self.loss_fn = build_loss_fn(config)
        self.val_eval = PoseEvaluation(use_3d=getattr(model, "predicts_translation", False))
        self.faults = parse_faults()

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        return self.model(image)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.faults:
            on_checkpoint_save(self.faults, self.global_step)

    # ----------------------------------------------------------------- steps
    def _common_step(self, batch: dict[str, Tensor], stage: str) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        out = self.model(batch["image"])
        terms = self.loss_fn(out, batch)
        if stage == "train":
            if self.faults:
                terms = apply_faults(self.faults, terms, self.global_step)
            self._check_finite(terms)
        batch_size = batch["image"].shape[0]
        names = TERMS if stage == "train" else ("loss",)
        for name in names:
            self.log(f"{stage}/{name}", terms[name].detach(), on_step=False, on_epoch=True,
                     sync_dist=True, batch_size=batch_size)
        return terms, out

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        if self.faults:
            on_train_step(self.faults, self.global_step, self.trainer.default_root_dir)
        terms, _ = self._common_step(batch, "train")
        self.log("loss", terms["loss"].detach(), prog_bar=True, logger=False, on_step=True, on_epoch=False)
        # "terms" (in TERMS order) is the step's TensorBoard scalars (fastpose.training.tblog.StepLosses)
        return {"loss": terms["loss"], "terms": torch.stack([terms[name].detach() for name in TERMS])}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        from fastpose.pose.aggregate import evaluate_batch
        from fastpose.pose.evaluation import detect

        terms, out = self._common_step(batch, "val")
        self.val_eval.update(detect(out, batch["intrinsics"]), batch)
        # The first batch's predictions go to the callbacks (pose image panel); others return only the loss.
        if batch_idx == 0:
            ev = evaluate_batch(out, batch)
            return {"loss": terms["loss"], "out": {k: v.detach() for k, v in out.items()}, "ev": ev}
        return {"loss": terms["loss"]}

    def on_validation_epoch_end(self) -> None:
        # torchmetrics reduce their states across ranks in compute(), so every rank holds the global value;
        # sync_dist (a mean of equal numbers) only keeps Lightning's epoch-level bookkeeping uniform.
        for name, value in self.val_eval.compute().items():
            self.log(f"val/{name}", torch.as_tensor(value, dtype=torch.float32), sync_dist=True)
        self.val_eval.reset()

    def _check_finite(self, terms: dict[str, Tensor]) -> None:
        values = torch.stack([terms[name].detach().float() for name in TERMS])
        bad = ~torch.isfinite(values)
        if self.trainer.world_size > 1:  # every rank must stop together, naming the same term
            bad = self.trainer.strategy.reduce(bad.float(), reduce_op="sum") > 0
        if bool(bad.any()):
            # name the component first: loss is just their sum
            order = [TERMS.index(n) for n in ("loss_mask", "loss_rot", "loss_trans", "loss_size", "loss")]
            index = next(i for i in order if bool(bad[i]))
            raise DivergedError(TERMS[index], float(values[index]), self.current_epoch, self.global_step)

    # ----------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        t = self.config.train
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(100, max(1, total // 20))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
