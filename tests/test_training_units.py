"""Fast tests of the training glue's pieces: fault seam, config assembly, pose drawing, schedule, ranks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastpose.config import ConfigError, RunConfig, build_config
from fastpose.errors import FastposeError
from fastpose.training.draw import axes_2d, pose_panel
from fastpose.faults import Fault, InjectedFault, apply_faults, parse_faults
from fastpose.training.module import cosine_with_warmup
from fastpose.training.runner import _limit, launch_rank, parse_devices


# ------------------------------------------------------------------------------------------ faults
def test_fault_spec_parses_every_action():
    assert parse_faults("raise@step:3, nan@step:2,inf:loss_mask@step:5,sleep:0.5@step:1") == (
        Fault("raise", 3),
        Fault("nan", 2, term="loss_rot"),
        Fault("inf", 5, term="loss_mask"),
        Fault("sleep", 1, seconds=0.5),
    )
    assert parse_faults("") == ()


@pytest.mark.parametrize("bad", ["boom@step:1", "raise@epoch:1", "nan:loss_x@step:1", "raise@step:x", "sleep@step:1"])
def test_bad_fault_spec_is_a_user_error(bad):
    with pytest.raises(FastposeError, match="FASTPOSE_FAULT"):
        parse_faults(bad)


def test_faults_fire_at_their_step_only():
    terms = {"loss": torch.tensor(3.0), "loss_mask": torch.tensor(1.0), "loss_rot": torch.tensor(2.0)}
    faults = parse_faults("nan:loss_mask@step:2,raise@step:4")
    assert apply_faults(faults, terms, 1) is terms
    hit = apply_faults(faults, terms, 2)
    assert math.isnan(hit["loss_mask"]) and math.isnan(hit["loss"]) and hit["loss_rot"] == 2
    with pytest.raises(InjectedFault, match="step 4"):
        apply_faults(faults, terms, 4)


# ------------------------------------------------------------------------------------------ config
def test_build_config_layers_defaults_file_and_command_line(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('name = "FROM_FILE"\n[train]\nepochs = 5\nlr = 0.01\n[loss]\nname = "mse"\n')
    config = build_config(toml, {"train.lr": 0.002, "data.image_size": 32})
    assert config.name == "FROM_FILE"
    assert (config.train.epochs, config.train.lr, config.loss.name) == (5, 0.002, "mse")
    assert config.data.image_size == 32 and config.train.batch_size == RunConfig().train.batch_size
    assert build_config(toml, {"name": "CLI"}).name == "CLI"


def test_build_config_needs_a_name_and_refuses_unknown_keys(tmp_path):
    with pytest.raises(ConfigError, match="--name"):
        build_config(None, {"train.epochs": 2})
    toml = tmp_path / "bad.toml"
    toml.write_text('name = "X"\n[train]\nepoch = 5\n')
    with pytest.raises(ConfigError, match="unknown config key 'train.epoch'"):
        build_config(toml, {})
    with pytest.raises(ConfigError, match="limit-train-batches"):
        build_config(None, {"name": "X", "train.limit_train_batches": 0})


def test_every_config_field_is_typed_and_a_wrong_type_names_the_key_and_the_file(tmp_path):
    """check_type covers every field: each annotation is one it knows, and a value of the wrong type for
    any key of a TOML file is one ConfigError naming that key and the file."""
    import dataclasses

    config = RunConfig()
    fields = [("", f) for f in dataclasses.fields(config) if not dataclasses.is_dataclass(getattr(config, f.name))]
    fields += [(f"{section}.", f) for section in ("data", "model", "loss", "train")
               for f in dataclasses.fields(getattr(config, section))]
    assert {p + f.name for p, f in fields} == set(config.flat())
    for prefix, f in fields:
        assert {k.strip() for k in str(f.type).split("|")} <= {"int", "float", "str", "bool", "None"}, f
        section, _, key = (prefix + f.name).rpartition(".")
        path = tmp_path / f"wrong_{f.name}.toml"
        path.write_text((f"[{section}]\n" if section else "") + f"{key} = [1]\n")
        with pytest.raises(ConfigError) as info:
            build_config(path, {"name": "X"})
        assert repr(prefix + f.name) in str(info.value) and path.name in str(info.value)


def test_trainer_argument_helpers():
    assert parse_devices("2") == 2 and parse_devices("0,1") == [0, 1] and parse_devices("auto") == "auto"
    assert _limit(1.0) == 1.0 and isinstance(_limit(1.0), float)  # all batches
    assert _limit(0.25) == 0.25 and _limit(3.0) == 3 and isinstance(_limit(3.0), int)  # three batches
    assert _limit(2) == 2


def test_launch_rank_reads_the_launcher_environment(monkeypatch):
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert launch_rank() == 0
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch_rank() == 1
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "1")
    assert launch_rank() != 0
    monkeypatch.setenv("RANK", "0")
    assert launch_rank() == 0


# ------------------------------------------------------------------------------------------ schedule
def test_cosine_schedule_warms_up_then_decays_to_zero():
    f = cosine_with_warmup(total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0, abs=1e-12) and f(150) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------ drawing
def test_projected_axes_point_the_right_way():
    K = torch.tensor([[64.0, 0, 32], [0, 64.0, 32], [0, 0, 1]])
    t = torch.tensor([[0.0, 0.0, 2.0]])
    pts = axes_2d(K, torch.eye(3)[None], t, torch.tensor([0.5]))[0]
    origin, x_tip, y_tip, z_tip = pts
    assert origin.tolist() == pytest.approx([32, 32])
    assert x_tip[0] > origin[0] + 10 and x_tip[1] == pytest.approx(32)  # +x is right in the image
    assert y_tip[1] > origin[1] + 10  # +y is down (camera convention)
    assert z_tip.tolist() == pytest.approx([32, 32])  # looking straight along +z


def _panel_batch(B: int = 2, S: int = 32) -> dict:
    """Two 32x32 images, objects straight ahead at 2 m (identity rotation): sample 0 one camera, sample 1 a
    camera and a mug side by side."""
    M = 3
    trans = torch.tensor([0.0, 0.0, 2.0]).expand(B, M, 3).clone()
    trans[1, 1] = torch.tensor([0.6, 0.0, 2.0])  # sample 1's second object: right of the first
    return {
        "image": torch.zeros(B, 3, S, S),
        "intrinsics": torch.tensor([[32.0, 0, 16], [0, 32.0, 16], [0, 0, 1]]).expand(B, 3, 3),
        "inst_valid": torch.tensor([[True, False, False], [True, True, False]]),
        "inst_class": torch.tensor([[3, 0, 0], [3, 6, 0]]),
        "inst_rot": torch.eye(3).expand(B, M, 3, 3).clone(),
        "inst_trans": trans,
        "inst_size": torch.full((B, M, 3), 0.6),
    }


def _red(img):  # noqa: ANN001, ANN202 - (H, W, 3) uint8 array -> bool mask of the x axis' red
    return (img[..., 0] > 180) & (img[..., 1] < 110) & (img[..., 2] < 110)


def _axis_colour(img):  # noqa: ANN001, ANN202 - any of the three axis colours
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return ((r > 180) & (g < 110) & (b < 110)) | ((g > 160) & (r < 110) & (b < 110)) | ((b > 200) & (r < 130) & (g < 160))


def test_pose_panel_draws_ground_truth_left_and_prediction_right():
    import numpy as np

    from fastpose.training.draw import tile_size

    batch = _panel_batch()
    flipped = batch["inst_rot"].clone()
    flipped[..., 0, 0] = -1  # predicted x axis points left
    flipped[..., 1, 1] = -1
    error = torch.full((2, 3), 180.0)
    panel = pose_panel(batch, flipped, torch.ones(2, 3, dtype=torch.bool), count=2, error_deg=error)
    tile = tile_size(32)
    assert tile == 128 and panel.tile == tile  # drawn 4x larger than the 32 px images
    img = panel.as_array()
    assert img.shape == (panel.header + 2 * tile, 2 * tile, 3) and img.dtype == np.uint8
    assert [c for c, _ in panel.captions] == ["ground truth", "predicted"]
    for column, (_, (left, top, right, bottom)) in enumerate(panel.captions):  # centred over its column
        assert 0 <= top < bottom <= panel.header
        assert abs((left + right) / 2 - (column + 0.5) * tile) < 2
        assert img[top:bottom, left:right].max() > 200  # white text on the dark band
    x0, y0, x1, y1 = panel.tile_box(0, 0)
    gt = img[y0:y1, x0:x1]
    x0, y0, x1, y1 = panel.tile_box(0, 1)
    pred = img[y0:y1, x0:x1]
    cols_gt, cols_pred = _red(gt).nonzero()[1], _red(pred).nonzero()[1]
    assert cols_gt.size and cols_pred.size
    assert cols_gt.mean() > tile / 2 > cols_pred.mean()  # +x right in the truth, left in the prediction
    # thick and antialiased: the horizontal x axis is 2-4 px of full red with blended pixels at its edges
    column = gt[:, tile // 2 + 10]  # the axis runs 19 px right of the centre (0.3 m at 2 m, f = 32 px, 4x)
    assert 2 <= _red(column[None])[0].sum() <= 4
    reds = column[:, 0].astype(int)
    assert ((reds > 30) & (reds < 180)).any()
    assert [(l.sample, l.slot, l.column, l.text) for l in panel.labels] == [
        (0, 0, 0, "camera"), (0, 0, 1, "180°"), (1, 0, 0, "camera"), (1, 1, 0, "mug"), (1, 0, 1, "180°"),
        (1, 1, 1, "180°")]


def test_pose_panel_marks_a_missed_object_instead_of_drawing_axes():
    batch = _panel_batch()
    matched = torch.tensor([[True, False, False], [False, True, False]])  # sample 1: the camera is missed
    error = torch.tensor([[12.4, math.nan, math.nan], [math.nan, 3.6, math.nan]])
    panel = pose_panel(batch, batch["inst_rot"].clone(), matched, count=2, error_deg=error)
    img = panel.as_array()
    texts = {(l.sample, l.slot, l.column): l.text for l in panel.labels}
    assert texts[(0, 0, 1)] == "12°" and texts[(1, 1, 1)] == "4°" and texts[(1, 0, 1)] == "missed"
    scale = panel.tile / 32
    # around the missed camera's projected centre (16, 16) in sample 1's predicted tile: no axes at all...
    x0, y0, _, _ = panel.tile_box(1, 1)
    cx, cy = int(x0 + 16 * scale), int(y0 + 16 * scale)
    around = img[cy - 14:cy + 15, cx - 14:cx + 15]
    assert not _axis_colour(around).any()
    ring = (around[..., 0] > 200) & (around[..., 1] > 120) & (around[..., 1] < 220) & (around[..., 2] < 80)
    assert ring.any()  # ...but the orange ring
    # the same place in the ground-truth tile has them, and so does the mug in the predicted tile
    gx0, gy0, _, _ = panel.tile_box(1, 0)
    assert _axis_colour(img[gy0 + cy - y0 - 14:gy0 + cy - y0 + 15, gx0 + cx - x0 - 14:gx0 + cx - x0 + 15]).any()
    mx = int(x0 + (16 + 32 * 0.6 / 2) * scale)
    assert _axis_colour(img[cy - 14:cy + 15, mx - 14:mx + 15]).any()
    missed_box = next(l.box for l in panel.labels if l.text == "missed")
    assert x0 <= missed_box[0] < missed_box[2] <= x0 + panel.tile  # the word stays in its tile


def test_predicted_rotations_follow_evaluate_batch_order_and_give_the_metric_error():
    from scipy.spatial.transform import Rotation

    from fastpose.training.tblog import predicted_rotations

    valid = torch.tensor([[True, False, True], [False, True, False]])
    half_turn_z = torch.tensor([0.0, 0.0, 1.0, 0.0])
    gt = Rotation.from_euler("xyz", [[10, 20, 30], [0, 0, 0], [45, 0, 0]], degrees=True)
    pred = Rotation.from_euler("xyz", [[10, 20, 37], [0, 0, 180], [0, 0, 0]], degrees=True)
    ev = {
        "pred_quat": torch.stack([torch.tensor(pred[0].as_quat(), dtype=torch.float32) * 2.5,  # unnormalised
                                  half_turn_z, torch.zeros(4)]),  # missed: zeros
        "gt_quat": torch.tensor(gt.as_quat(), dtype=torch.float32),
        "class_id": torch.tensor([3, 5, 1]),  # camera, laptop, bottle
        "matched": torch.tensor([True, True, False]),
    }
    rot, matched, error = predicted_rotations({"inst_valid": valid}, ev)
    assert rot.shape == (2, 3, 3, 3)
    assert torch.allclose(rot[0, 2], torch.diag(torch.tensor([-1.0, -1.0, 1.0])), atol=1e-6)
    assert matched.tolist() == [[True, False, True], [False, False, False]]
    assert torch.equal(rot[1, 1], torch.eye(3))  # a missed instance keeps the identity (never drawn)
    reference = np.degrees((gt[:2].inv() * pred[:2]).magnitude())  # scipy, float64
    assert error[0, 0].item() == pytest.approx(reference[0], abs=1e-3)
    assert error[0, 2].item() == pytest.approx(reference[1], abs=1e-3) and reference[1] == pytest.approx(180)
    assert math.isnan(error[1, 1].item())  # missed: no error, not the identity's
    assert math.isnan(error[0, 1].item()) and math.isnan(error[1, 0].item())  # empty slots


# ------------------------------------------------------------------------------------------ display
def test_the_progress_bar_shows_no_logger_version(tmp_path):
    """Lightning's bar shows the logger's version as ``v_num``: for our ``tensorboard`` directory, ``oard``."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import RichProgressBar
    from pytorch_lightning.loggers import TensorBoardLogger

    from fastpose.training.display import ProgressBar

    for bar, shown in ((RichProgressBar(), True), (ProgressBar(), False)):
        logger = TensorBoardLogger(save_dir=str(tmp_path), name="", version="tensorboard")
        trainer = pl.Trainer(logger=logger, callbacks=[bar], enable_checkpointing=False, max_epochs=1)
        assert ("v_num" in bar.get_metrics(trainer, None)) is shown


def test_the_epoch_line_leads_with_the_primary_metric():
    from fastpose.screens.epoch import EpochLine
    from fastpose.screens.terminal.epoch import epoch_line

    values = {"train/loss": 1.4562, "val/loss": 1.778, "val/miss_rate": 0.5, "val/rot_err_median": math.nan,
              "val/5deg_2cm": 0.25, "val/10deg": 0.1}
    text = epoch_line(EpochLine(3, 10, "val/5deg_2cm", values, (0.3, 1))).plain
    assert text == ("epoch 4/10  val/5deg_2cm 0.25 (best 0.3, epoch 2)  val/rot_err_median n/a  val/miss_rate 0.5  "
                    "val/loss 1.78  train/loss 1.46")


# ------------------------------------------------------------------------------------------ journal seam
def test_a_failing_journal_never_stops_training(capsys):
    from fastpose.training.callbacks import JournalCallback

    class Down:
        def heartbeat(self, *a, **k):
            raise OSError("database is locked")

        log_metrics = heartbeat

    cb = JournalCallback(Down(), run_id=1, heartbeat_s=0.01)
    cb.start_heartbeat()
    import time

    time.sleep(0.1)
    cb._write("metrics", cb.store.log_metrics, 1, [])
    cb._write("metrics", cb.store.log_metrics, 1, [])
    cb.stop_heartbeat()
    err = capsys.readouterr().err
    assert err.count("journal heartbeat failed") == 1 and err.count("journal metrics failed") == 1
    assert "training goes on" in err


def test_resume_note_names_code_and_config_changes():
    from fastpose.journal.records import GitState
    from fastpose.training.runner import describe_resume

    class Parent:
        id, name, label, status = 7, "Q", "26-11-28/10-00-Q-SYNTHETIC-resnet18-scratch", "interrupted"
        config = RunConfig().override({"name": "Q"}).to_dict()

    class Reader:
        def git_state(self, run_id):
            return GitState(is_repo=True, commit="a" * 40, diff="")

    now = GitState(is_repo=True, commit="b" * 40, diff="+x")
    config = RunConfig().override({"name": "Q2", "train.epochs": 9, "train.progress_bar": False})
    note = describe_resume(Reader(), Parent(), config, now, "/r/last.ckpt")
    assert note.startswith("resumed from #7 Q (interrupted); ")
    assert "code: commit aaaaaaaaaa -> bbbbbbbbbb" in note and "uncommitted changes differ" in note
    assert note.endswith(f"config: train.epochs {RunConfig().train.epochs} -> 9")
    # one short line: the checkpoint's path is the run's own record (journal show); the name and display
    # options are no config change (compare leaves them out too)
    assert "last.ckpt" not in note and "'Q2'" not in note and "progress_bar" not in note and "\n" not in note


def test_epoch_writes_leave_the_training_thread_and_land_before_the_run_ends():
    """A slow journal (a busy SQLite lock) does not hold the epoch end; stopping drains the queue in order."""
    import threading

    from fastpose.training.callbacks import JournalCallback

    calls: list[tuple[str, str]] = []
    release = threading.Event()

    class Slow:
        def log_metrics(self, run_id, points):
            release.wait(10)
            calls.append(("metrics", threading.current_thread().name))

        def heartbeat(self, run_id, epoch=None, step=None):
            calls.append((f"heartbeat {epoch}", threading.current_thread().name))

    cb = JournalCallback(Slow(), run_id=1, heartbeat_s=60)

    class Trainer:
        is_global_zero, sanity_checking, current_epoch, global_step = True, False, 3, 40
        callback_metrics = {"train/loss": torch.tensor(0.5)}

    cb.start_heartbeat()
    cb.on_train_epoch_end(Trainer(), None)  # returns while the journal is still blocked
    assert calls == []
    release.set()
    cb.stop_heartbeat()
    assert calls == [("metrics", "fastpose-journal"), ("heartbeat 3", "fastpose-journal")]
    cb.stop_heartbeat()  # idempotent
    cb.on_train_epoch_end(Trainer(), None)  # no thread any more: written at once, on this thread
    assert calls[-1] == ("heartbeat 3", threading.current_thread().name)


def test_the_epoch_line_ends_with_the_epochs_time_and_the_whole_runs_time_left():
    from fastpose.screens.epoch import EpochLine
    from fastpose.screens.terminal.epoch import epoch_line

    values = {"val/10deg": 0.1, "train/loss": 1.5}
    text = epoch_line(EpochLine(3, 10, "val/10deg", values, None, 12.4, 6 * 12.4)).plain
    assert text == "epoch 4/10  val/10deg 0.1  train/loss 1.5  (12s; run ~1m14s to go)"
    assert epoch_line(EpochLine(9, 10, "val/10deg", values, None, 12.4, 0.0)).plain.endswith("train/loss 1.5  (12s)")
