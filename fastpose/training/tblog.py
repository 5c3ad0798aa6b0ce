"""TensorBoard beyond Lightning's epoch scalars: per-step losses, the HParams tab, the pose panel.

Every value is logged at the step Lightning's own ``self.log`` values are (``logged_step``), so in
TensorBoard an epoch's validation scalars, its pose panel and its last training step share one x position.

| tag | what | when |
| --- | --- | --- |
| ``train_step/loss``, ``train_step/loss_<term>`` | the loss and its terms of every training step (rank zero's batch) | every step (``StepLosses``) |
| ``train/loss``, ``train/loss_<term>``, ``val/*`` | epoch means and validation metrics (Lightning, ``PoseModule``) | each epoch |
| ``lr-AdamW`` | the learning rate (``LearningRateMonitor``) | every step |
| ``val/poses`` | the pose panel (``fastpose.training.draw``) | each validation |
| HParams | ``RunConfig.flat()`` and the run's status, with the metrics of ``hparam_metrics`` (their last values) | once: at the end, or when the run stops with an exception (``HParamsSummary``) |

``StepLosses`` keeps the cheap path: a step's terms stay where they were computed as one small tensor, and
every ``flush_every`` steps (and at each epoch end and any stop) they are copied to the CPU in one transfer
and written, so logging every step adds no per-step device synchronisation.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch

from fastpose.config import RunConfig
from fastpose.training.draw import pose_panel


class StepLosses(pl.Callback):
    """Every training step's loss terms into TensorBoard as ``train_step/<term>`` (see the module docstring).

    ``training_step`` returns ``{"loss": ..., "terms": (T,) detached tensor}`` with the terms in the order
    of ``terms``. Global rank zero only: under DDP this is rank zero's batch (the epoch means are reduced).
    """

    def __init__(self, terms: tuple[str, ...], flush_every: int = 50) -> None:
        self.terms, self.flush_every = terms, flush_every
        self._pending: list[tuple[int, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if not trainer.is_global_zero or not isinstance(outputs, dict) or outputs.get("terms") is None:
            return
        self._pending.append((logged_step(trainer), outputs["terms"]))
        if len(self._pending) >= self.flush_every:
            self.flush(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.flush(trainer)

    def flush(self, trainer: pl.Trainer) -> None:
        pending, self._pending = self._pending, []
        experiment = _writer(trainer)
        if not pending or experiment is None:
            return
        rows = torch.stack([values.detach().float() for _, values in pending]).cpu().tolist()  # one transfer
        for (step, _), row in zip(pending, rows):
            for name, value in zip(self.terms, row):
                experiment.add_scalar(f"train_step/{name}", value, global_step=step)


def hparam_metrics(monitor: str) -> list[str]:
    """The metrics of the HParams table: the primary metric first, then every headline metric a run logs
    (``fastpose.metrics.LOGGED``, per-class APs left out), the same list for every run so
    TensorBoard's one table fits them all."""
    from fastpose.metrics import LOGGED

    return [monitor, *(name for name in LOGGED if name != monitor)]


class HParamsSummary(pl.Callback):
    """The HParams tab (see the module docstring), written once per run on global rank zero: at fit end
    with status ``completed``, or from ``on_exception`` with ``interrupted`` (a signal), ``diverged`` (a
    non-finite loss) or ``crashed``, and whatever metrics were logged by then. TensorBoard shows each
    metric's last logged value; a metric never logged stays empty."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.written: str | None = None  # the status written, once written

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.write(trainer, "completed")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        from fastpose.training.module import DivergedError

        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            status = "interrupted"
        elif isinstance(exception, DivergedError):
            status = "diverged"
        else:
            status = "crashed"
        self.write(trainer, status)

    def write(self, trainer: pl.Trainer, status: str) -> None:
        if self.written is not None or not trainer.is_global_zero:
            return
        experiment = _writer(trainer)
        file_writer = None if experiment is None else experiment._get_file_writer()
        if file_writer is None:  # no TensorBoard, or Lightning's dummy experiment on a rank other than zero
            return  # ($RANK can say so while the trainer, started by the cluster, thinks it is alone)
        for summary in hparams_summaries(self.config, status, hparam_metrics(self.config.train.monitor)):
            file_writer.add_summary(summary)
        experiment.flush()
        self.written = status


def hparams_summaries(config: RunConfig, status: str, metrics: list[str]) -> list[Any]:
    """The three HParams plugin summaries (experiment, session start, session end) for this run:
    hyperparameters ``config.flat()`` (None, booleans and lists as text) plus ``status``; the session's end status is
    SUCCESS for a completed run, FAILURE otherwise."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION, PLUGIN_NAME, SESSION_END_INFO_TAG
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
    from torch.utils.tensorboard.summary import hparams

    params: dict[str, Any] = {}
    for key, value in config.flat().items():
        # bools as text: torch's hparams() would store them as the numbers 0 and 1
        params[key] = value if isinstance(value, (int, float, str)) and not isinstance(value, bool) else str(value)
    params["status"] = status
    experiment, start, _ = hparams(params, {name: math.nan for name in metrics})
    end = SessionEndInfo(status=Status.Value("STATUS_SUCCESS" if status == "completed" else "STATUS_FAILURE"))
    content = HParamsPluginData(session_end_info=end, version=PLUGIN_DATA_VERSION)
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME,
                                                                  content=content.SerializeToString()))
    return [experiment, start, Summary(value=[Summary.Value(tag=SESSION_END_INFO_TAG, metadata=meta)])]


def _writer(trainer: pl.Trainer) -> Any:
    """The run's ``SummaryWriter``, or None without a TensorBoard logger."""
    experiment = getattr(trainer.logger, "experiment", None)
    return experiment if experiment is not None and hasattr(experiment, "add_scalar") else None


class PoseImages(pl.Callback):
    """TensorBoard image panel ``val/poses``: the first validation batch's first ``count`` samples, ground
    truth left, prediction right, each object's rotation error written beside it, missed objects marked
    (``fastpose.training.draw``). Logged at the step Lightning logs that validation's scalars at."""

    def __init__(self, count: int) -> None:
        self.count = count

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero or not self.count:
            return
        if not isinstance(outputs, dict) or "ev" not in outputs:
            return
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image"):
            return
        pred_rot, matched, error = predicted_rotations(batch, outputs["ev"])
        panel = pose_panel(batch, pred_rot, matched, self.count, error)
        experiment.add_image("val/poses", panel.as_array(), global_step=logged_step(trainer), dataformats="HWC")


def logged_step(trainer: pl.Trainer) -> int:
    """The step Lightning's own logging uses right now (``self.log`` values, validation included): the
    number of optimizer steps taken before the current batch. ``trainer.global_step`` is one more than that
    during an epoch-end validation, so images logged at it sat one step off the scalars."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    step = getattr(loop, "_batches_that_stepped", None)
    return int(step) if isinstance(step, int) else int(trainer.global_step)


def predicted_rotations(batch: dict, ev: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scatter the per-GT-instance evaluation back to slots: (B,M,3,3) rotations, (B,M) matched and (B,M)
    rotation error in degrees (``rotation_error_deg``, the metric's definition; NaN where missed).

    ``evaluate_batch`` lists ground-truth instances in row-major order of ``inst_valid`` (sample, slot); a
    missed instance keeps the identity rotation, which the panel never draws (it marks it missed).
    """
    from fastpose.pose.metrics import rotation_error_deg
    from fastpose.pose.rotations import quat_to_rotmat

    valid = batch["inst_valid"].bool().cpu()
    B, M = valid.shape
    rot = torch.eye(3).expand(B, M, 3, 3).clone()
    matched = torch.zeros(B, M, dtype=torch.bool)
    error = torch.full((B, M), math.nan)
    pred_quat, was_matched = _field(ev, "pred_quat"), _field(ev, "matched")
    if pred_quat is None or was_matched is None or pred_quat.shape[0] != int(valid.sum()):
        return rot, matched, error
    index = valid.nonzero(as_tuple=True)
    pred_quat = pred_quat.detach().float().cpu()
    hit = was_matched.detach().cpu().bool()
    # roma's matrix of a missed (zero) quaternion is zero: a missed instance keeps the identity
    rot[index] = torch.where(hit[:, None, None], quat_to_rotmat(pred_quat), rot[index])
    matched[index] = hit
    gt_quat, class_id = _field(ev, "gt_quat"), _field(ev, "class_id")
    if gt_quat is not None and class_id is not None:
        handle = batch.get("inst_handle_visible")
        handle = handle.bool().cpu()[index] if handle is not None else None
        err = rotation_error_deg(pred_quat, gt_quat.detach().float().cpu(), class_id.detach().cpu(), handle)
        error[index] = torch.where(hit, err, torch.full_like(err, math.nan))
    return rot, matched, error


def _field(ev: Any, name: str) -> Any:
    return ev.get(name) if isinstance(ev, dict) else getattr(ev, name, None)
