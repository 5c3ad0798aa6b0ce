"""Fast tests of the training glue's pieces: fault seam, config assembly, pose drawing, schedule, ranks."""

from __future__ import annotations

import math

import pytest
import torch

from fastpose.config import ConfigError, RunConfig, build_config
from fastpose.errors import FastposeError
from fastpose.training.draw import axes_2d, pose_panel
from fastpose.training.faults import Fault, InjectedFault, apply_faults, parse_faults
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


def test_pose_panel_draws_ground_truth_left_and_prediction_right():
    B, M, S = 2, 3, 32
    batch = {
        "image": torch.zeros(B, 3, S, S),
        "intrinsics": torch.tensor([[32.0, 0, 16], [0, 32.0, 16], [0, 0, 1]]).expand(B, 3, 3),
        "inst_valid": torch.tensor([[True, False, False], [True, True, False]]),
        "inst_rot": torch.eye(3).expand(B, M, 3, 3).clone(),
        "inst_trans": torch.tensor([0.0, 0.0, 2.0]).expand(B, M, 3).clone(),
        "inst_size": torch.full((B, M, 3), 0.6),
    }
    flipped = batch["inst_rot"].clone()
    flipped[..., 0, 0] = -1  # predicted x axis points left
    flipped[..., 1, 1] = -1
    panel = pose_panel(batch, flipped, torch.ones(B, M, dtype=torch.bool), count=2)
    assert panel.shape == (3, 2 * S, 2 * S)
    gt, pred = panel[:, :S, :S], panel[:, :S, S:]
    red = lambda img: (img[0] > 0.9) & (img[1] < 0.2)  # noqa: E731
    cols_gt = red(gt).nonzero()[:, 1]
    cols_pred = red(pred).nonzero()[:, 1]
    assert cols_gt.numel() and cols_pred.numel()
    assert cols_gt.float().mean() > 16 > cols_pred.float().mean()


def test_predicted_rotations_follow_evaluate_batch_order():
    from fastpose.training.callbacks import predicted_rotations

    valid = torch.tensor([[True, False, True], [False, True, False]])
    half_turn_z = torch.tensor([0.0, 0.0, 1.0, 0.0])
    ev = {
        "pred_quat": torch.stack([torch.tensor([0.0, 0, 0, 1]), half_turn_z, torch.zeros(4)]),  # missed: zeros
        "matched": torch.tensor([True, True, False]),
    }
    rot, matched = predicted_rotations({"inst_valid": valid}, ev)
    assert rot.shape == (2, 3, 3, 3)
    assert torch.allclose(rot[0, 2], torch.diag(torch.tensor([-1.0, -1.0, 1.0])), atol=1e-6)
    assert matched.tolist() == [[True, False, True], [False, False, False]]
    assert torch.equal(rot[1, 1], torch.eye(3))  # a missed instance keeps the identity (drawn grey)


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
        id, label, status = 7, "26-11-28/10-00-Q-SYNTHETIC-resnet18-scratch", "interrupted"
        config = RunConfig().override({"name": "Q"}).to_dict()

    class Reader:
        def git_state(self, run_id):
            return GitState(is_repo=True, commit="a" * 40, diff="")

    now = GitState(is_repo=True, commit="b" * 40, diff="+x")
    config = RunConfig().override({"name": "Q2", "train.epochs": 9})
    note = describe_resume(Reader(), Parent(), config, now, "/r/last.ckpt")
    assert note.startswith("resumed from run 7 (26-11-28/10-00-Q-SYNTHETIC-resnet18-scratch, interrupted)")
    assert "code: commit aaaaaaaaaa -> bbbbbbbbbb" in note and "uncommitted changes differ" in note
    assert "name 'Q' -> 'Q2'" in note and f"train.epochs {RunConfig().train.epochs} -> 9" in note


def test_epoch_writes_leave_the_training_thread_and_land_before_the_run_ends():
    """A slow journal (a busy SQLite lock) does not hold the epoch end; stopping drains the queue in order."""
    import threading
    import time

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
