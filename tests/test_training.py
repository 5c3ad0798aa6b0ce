"""Real training runs through the real `fastpose` command: tiny data, CPU, real signals, a real journal.

Faults come in through the one documented seam, ``$FASTPOSE_FAULT`` (fastpose/faults.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_git_repo
from fastpose.config import RunConfig

RunConfigFlat = RunConfig().flat()

# 16 images of 32x32, batches of 8: two steps per epoch, a second or so per epoch on this CPU. On the CPU and
# one thread, pinned: the runs here are compared number for number, and the thread count changes the numbers.
TINY = [
    "--image-size", "32", "--train-size", "16", "--val-size", "8", "--batch-size", "8",
    "--no-progress", "--log-images", "2", "--accelerator", "cpu", "--threads", "1",
]
TRAIN_TERMS = ("train/loss", "train/loss_mask", "train/loss_rot", "train/loss_trans", "train/loss_size")
VAL_ALWAYS = ("val/loss", "val/5deg", "val/10deg", "val/20deg", "val/iou_25", "val/10deg_5cm", "val/miss_rate")

pytestmark = pytest.mark.slow


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FASTPOSE_JOURNAL_URL", "FASTPOSE_FAULT", "FASTPOSE_HOME")}
    env.update(FASTPOSE_HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    return env


def fastpose(home: Path, *args: str, cwd: Path | None = None, timeout: float = 300, **extra: str):
    return subprocess.run(
        [sys.executable, "-m", "fastpose", *args], cwd=cwd, env=env_for(home, **extra),
        capture_output=True, text=True, timeout=timeout,
    )


def load_torch_file(path: Path):  # noqa: ANN201 - what every command uses to read a checkpoint
    from fastpose.pose.checkpoint import load_torch_file as load

    return load(path)


def store_at(home: Path):
    from fastpose.journal.store import JournalStore

    return JournalStore.open(f"sqlite:///{home / 'fastpose.db'}")


def epochs_of(store, run_id: int, name: str = "train/loss") -> list[int]:
    return sorted(p.epoch for p in store.metric_history(run_id) if p.name == name)


def tensorboard_of(run_dir: str | Path):
    """The run's TensorBoard events, every point kept."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir) / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def hparams_of(acc) -> tuple[dict, str, list[str]]:  # noqa: ANN001
    """(hyperparameters, session end status, metric names) of the run's HParams summaries."""
    from google.protobuf.json_format import MessageToDict
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = acc.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    end = HParamsPluginData.FromString(content["_hparams_/session_end_info"]).session_end_info
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    params = {k: MessageToDict(v) for k, v in start.hparams.items()}  # a protobuf Value -> its plain value
    return params, api_pb2.Status.Name(end.status), [m.name.tag for m in experiment.metric_infos]


_BACKGROUND: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_leftover_runs():
    """A failed test must not leave its background run training."""
    yield
    while _BACKGROUND:
        proc = _BACKGROUND.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def start_background(home: Path, name: str, cwd: Path, epochs: int = 100_000, **extra: str) -> subprocess.Popen:
    """A run slowed down by the fault seam (0.15 s per step) so a signal lands mid-training; it is long
    enough never to finish on its own (a fast machine once completed 40 epochs before the signal came)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastpose", "train", "--name", name, "--epochs", str(epochs), *TINY],
        cwd=cwd, env=env_for(home, FASTPOSE_FAULT="sleep:0.15@step:0", **extra),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    _BACKGROUND.append(proc)
    return proc


def reader_at(home: Path):
    """A read-only reader (stdlib sqlite3): polling must not compete with the run's writes."""
    from fastpose.journal.access import open_reader

    return open_reader(f"sqlite:///{home / 'fastpose.db'}")


def wait_for_epochs(home: Path, proc: subprocess.Popen, n: int, timeout: float = 400) -> None:
    """Block until the running run has journaled ``n`` epochs (and its last.ckpt exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"run ended early ({proc.returncode}):\n{proc.stdout.read()}"
        db = home / "fastpose.db"
        if db.exists():
            store = reader_at(home)
            try:
                runs = store.list_runs()
                if runs and len(epochs_of(store, runs[0].id)) >= n:
                    ckpt = Path(runs[0].run_dir) / "checkpoints" / "last.ckpt"
                    if ckpt.exists():
                        return
            finally:
                store.close()
        time.sleep(1.0)
    proc.kill()
    proc.wait()
    raise AssertionError(f"no {n} epochs journaled within {timeout}s")


# ------------------------------------------------------------------------------------------ completed runs
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory):
    """Two completed runs differing in learning rate and --save-every: CMP_A started in a git repo, CMP_B
    started with CMP_A's config (``train --from``) in a directory that is no git repository."""
    root = tmp_path_factory.mktemp("two_runs")
    home, repo, outside = root / "home", root / "repo", root / "outside"
    head = make_git_repo(repo)
    outside.mkdir()
    a = fastpose(home, "train", "--name", "CMP_A", "--epochs", "2", "--lr", "1e-3", "--note", "baseline", *TINY, cwd=repo)
    assert a.returncode == 0, a.stderr
    b = fastpose(home, "train", "--from", "CMP_A", "--name", "CMP_B", "--lr", "3e-3", "--save-every", "1", cwd=outside)
    assert b.returncode == 0, b.stderr
    (root / "CMP_A.stderr").write_text(a.stderr)
    return home, repo, head


def test_completed_run_is_journaled_with_git_config_history_checkpoints_and_tensorboard(two_runs):

    home, repo, head = two_runs
    store = store_at(home)
    run = store.resolve("CMP_A")
    assert run.status == "completed"
    assert run.git_commit == head
    assert run.git_dirty is False
    assert run.command.startswith("fastpose train --name CMP_A")
    assert run.pid and run.host and run.torch_version and run.lightning_version
    expected = RunConfig().override({"name": "CMP_A", "train.epochs": 2, "train.lr": 1e-3, "data.image_size": 32,
                                     "data.train_size": 16, "data.val_size": 8, "train.batch_size": 8,
                                     "train.progress_bar": False, "train.log_images": 2,
                                     "train.accelerator": "cpu", "train.threads": 1})
    assert run.config == expected.to_dict()
    assert [n.text for n in store.notes(run.id)] == ["baseline"]

    history = store.metric_history(run.id)
    for name in TRAIN_TERMS + VAL_ALWAYS:
        assert sorted(p.epoch for p in history if p.name == name) == [0, 1], name
    assert set(store.summaries(run.id)) >= set(TRAIN_TERMS + VAL_ALWAYS)

    run_dir = Path(run.run_dir)
    assert run_dir == home / "runs" / run.label
    ckpts = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    b = store.resolve("CMP_B")
    assert {"epoch000.ckpt", "epoch001.ckpt", "last.ckpt"} <= {p.name for p in (Path(b.run_dir) / "checkpoints").iterdir()}

    acc = tensorboard_of(run_dir)
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/loss_rot", "val/loss", "val/miss_rate"} <= scalars
    assert len(acc.Scalars("val/loss")) == 2
    assert "val/poses" in acc.Tags()["images"]
    from fastpose.training.draw import tile_size

    image = acc.Images("val/poses")[-1]
    tile = tile_size(32)  # 2 samples, [GT | predicted] each, drawn 4x larger, captions on top
    assert image.width == 2 * tile and 2 * tile < image.height < 2 * tile + 40

    ckpt = load_torch_file(run_dir / "checkpoints" / "last.ckpt")
    assert ckpt["hyper_parameters"] == run.config  # every checkpoint carries the whole config
    assert ckpt["epoch"] == 1
    store.close()


def test_checkpoints_of_a_default_run_hold_no_layer4_or_classifier(two_runs):
    """At the default deepest_stride=16 the encoder's layer4 never runs (and fc never does): neither is in
    any checkpoint, and every parameter saved is one the optimizer trains."""
    home, _, _ = two_runs
    store = store_at(home)
    run = store.resolve("CMP_A")
    store.close()
    assert run.config["model"] == RunConfig().to_dict()["model"]  # the defaults: resnet18, scratch, stride 16
    files = sorted((Path(run.run_dir) / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in files} >= {"last.ckpt"} and any(p.name.startswith("best-") for p in files)
    for path in files:
        ckpt = load_torch_file(path)
        keys = list(ckpt["state_dict"])
        assert any(k.startswith("model.encoder.layer3.") for k in keys), path.name
        assert not [k for k in keys if "layer4" in k or k.startswith("model.encoder.fc.")], path.name
        params = [k for k, v in ckpt["state_dict"].items() if v.is_floating_point()
                  and not k.endswith(("running_mean", "running_var"))]
        assert len(ckpt["optimizer_states"][0]["state"]) == len(params), path.name


def test_tensorboard_has_every_step_hparams_and_images_at_the_scalars_steps(two_runs):
    """2 epochs x 2 steps: four per-step losses, the epoch's validation scalars and pose panel at one step,
    and the HParams tab holding the config, the status and the metrics (primary metric first)."""
    home, _, _ = two_runs
    store = store_at(home)
    run = store.resolve("CMP_A")
    store.close()
    acc = tensorboard_of(run.run_dir)
    steps = [e.step for e in acc.Scalars("train_step/loss")]
    assert steps == [0, 1, 2, 3]  # one point per optimizer step
    for term in ("loss_mask", "loss_rot", "loss_trans", "loss_size"):
        assert [e.step for e in acc.Scalars(f"train_step/{term}")] == steps
    assert len(acc.Scalars("lr-AdamW")) == 4
    val_steps = [e.step for e in acc.Scalars("val/loss")]
    assert val_steps == [1, 3]  # the last step of each epoch
    assert [e.step for e in acc.Images("val/poses")] == val_steps
    assert [e.step for e in acc.Scalars(run.config["train"]["monitor"])] == val_steps

    params, status, metrics = hparams_of(acc)
    assert status == "STATUS_SUCCESS" and params["status"] == "completed"
    assert params["train.lr"] == pytest.approx(1e-3) and params["data.image_size"] == 32
    assert params["model.weights"] == "None" and params["train.progress_bar"] == "False"
    assert set(params) == set(RunConfigFlat.keys()) | {"status"}
    assert metrics[0] == run.config["train"]["monitor"] and {"val/rot_err_median", "train/loss"} <= set(metrics)
    assert set(metrics) <= set(acc.Tags()["scalars"])  # TensorBoard shows each one's last value

    stderr = (home.parent / "CMP_A.stderr").read_text()
    monitor = run.config["train"]["monitor"]
    assert "layer4 not built" in stderr and "parameters (encoder" in stderr
    epochs = [line for line in stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split("  ")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]  # counted from 1
    assert all(line.split("  ")[1].startswith(f"{monitor} ") for line in epochs)
    assert "v_num" not in stderr


def test_one_checkpoint_file_per_epoch_end_linked_under_every_name(two_runs):
    """CMP_B keeps last.ckpt, the best and one per epoch (--save-every 1): the checkpoints due at one epoch end
    are one file under several names (hard links), each holding its own epoch; last.ckpt knows the best."""
    home, _, _ = two_runs
    store = store_at(home)
    run = store.resolve("CMP_B")
    store.close()
    ckpt_dir = Path(run.run_dir) / "checkpoints"
    files = {p.name: p for p in ckpt_dir.iterdir()}
    best = [n for n in files if n.startswith("best-epoch")]
    assert set(files) == {"last.ckpt", "epoch000.ckpt", "epoch001.ckpt", *best} and len(best) == 1, files
    loaded = {n: load_torch_file(p) for n, p in files.items()}
    assert loaded["last.ckpt"]["epoch"] == 1 and loaded["epoch000.ckpt"]["epoch"] == 0
    assert os.path.samefile(files["last.ckpt"], files["epoch001.ckpt"])
    assert not os.path.samefile(files["epoch000.ckpt"], files["epoch001.ckpt"])
    best_epoch = int(best[0][len("best-epoch"):-len(".ckpt")])
    assert loaded[best[0]]["epoch"] == best_epoch
    assert os.path.samefile(files[best[0]], files[f"epoch{best_epoch:03d}.ckpt"])
    states = loaded["last.ckpt"]["callbacks"]
    monitor = run.config["train"]["monitor"]
    best_state = next(v for k, v in states.items() if k.startswith(f"ModelCheckpoint{{'monitor': '{monitor}'"))
    assert Path(best_state["best_model_path"]).name == best[0]


def test_the_same_seed_gives_the_same_numbers(two_runs, tmp_path):
    """Deterministic on the CPU: the same command and seed reproduce every journaled number exactly (what the
    loss study's "run it twice, get the same table" rests on), wherever the images are rendered: the rerun
    renders in a DataLoader worker (``--render-device loader --num-workers 1``), the first run with the default
    (``auto``: without workers on the CPU, scenes sampled in the loader and ray-cast on the training device)."""
    home, repo, _ = two_runs
    again = tmp_path / "again"
    proc = fastpose(again, "train", "--name", "CMP_A", "--epochs", "2", "--lr", "1e-3", "--note", "baseline", *TINY,
                    "--render-device", "loader", "--num-workers", "1", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    first, second = store_at(home), store_at(again)
    a, b = (s.metric_history(s.resolve("CMP_A").id) for s in (first, second))
    first.close()
    second.close()
    assert len(a) >= 2 * len(TRAIN_TERMS + VAL_ALWAYS)
    assert [(p.name, p.epoch, p.step, p.value) for p in a] == [(p.name, p.epoch, p.step, p.value) for p in b]


def test_compare_two_real_runs(two_runs, tmp_path):
    home, repo, head = two_runs
    text = fastpose(home, "compare", "CMP_A", "CMP_B", COLUMNS="200")
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "CMP_A" in out and "CMP_B" in out
    assert "train.lr" in out and "train.save_every" in out
    assert "train.epochs" not in out  # only keys that differ
    assert "★" in out

    as_json = fastpose(home, "compare", "CMP_A", "CMP_B", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert [r["name"] for r in data["runs"]] == ["CMP_A", "CMP_B"]
    assert data["runs"][0]["git_commit"] == head and data["runs"][1]["git_commit"] is None  # CMP_B: no repo
    assert set(data["config_diff"]) == {"train.lr", "train.save_every"}  # the name is no config difference
    assert data["config_diff"]["train.lr"] == [1e-3, 3e-3]

    store = store_at(home)
    ids = [store.resolve("CMP_A").id, store.resolve("CMP_B").id]
    for name in ("train/loss", "val/loss", "val/miss_rate", "val/20deg"):
        entry = data["metrics"][name]
        finals = {i: store.summaries(i)[name][0] for i in ids}
        pick = min if entry["direction"] == "min" else max
        best = pick(finals.values())
        if list(finals.values()).count(best) == 1:  # a tie has no single winner to check
            assert entry["winner"] == next(i for i, v in finals.items() if v == best), name
        assert entry["runs"][str(ids[0])]["final"] == pytest.approx(finals[ids[0]])
    store.close()

    png = tmp_path / "curves.png"
    plotted = fastpose(home, "compare", "CMP_A", "CMP_B", "--plot", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_from_outside_a_repository_records_the_fastpose_checkout(two_runs):
    """CMP_B: ``train --from CMP_A`` (CMP_A's config, the options given on top) started in a directory that is
    no git repository. Its working directory records "not a git repository"; the fastpose code it ran is
    recorded by itself: version, package directory and, for an editable install (CI installs with -e), the
    commit of the checkout, found here with git independently."""
    import fastpose as fastpose_package
    from fastpose.journal.git import fastpose_version

    home, _, _ = two_runs
    store = store_at(home)
    a, b = store.resolve("CMP_A"), store.resolve("CMP_B")
    source, git = store.source_state(b.id), store.git_state(b.id)
    notes = [n.text for n in store.notes(b.id)]
    store.close()
    changed = {k: v for k, v in a.config.items()}
    changed.update(name="CMP_B", train={**a.config["train"], "lr": 3e-3, "save_every": 1})
    assert b.config == changed
    assert notes == [f"config from run {a.id} ({a.label}); changed: "  # the name is no config change
                     f"train.lr 0.001 -> 0.003, train.save_every 0 -> 1; threads 1, as run {a.id} used"]  # CMP_A's
    assert git is not None and not git.is_repo and git.error == "not a git repository"

    package = Path(fastpose_package.__file__).resolve().parent
    top = subprocess.run(["git", "-C", str(package), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    tracked = top.returncode == 0 and subprocess.run(
        ["git", "-C", top.stdout.strip(), "ls-files", "--", "fastpose/__init__.py"], capture_output=True, text=True,
    ).stdout.strip() == "fastpose/__init__.py"
    assert source.version == fastpose_version() and source.location == str(package)
    if tracked:  # an editable install of a checkout: its commit, although the run started outside it
        head = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert source.is_repo and source.commit == head.stdout.strip() and not source.same_as_cwd
        shown = fastpose(home, "journal", "show", "CMP_B", COLUMNS="160")
        assert shown.returncode == 0 and head.stdout.strip() in shown.stdout, shown.stderr
    else:
        assert not source.is_repo and source.error == "installed package, not a git checkout"
    data = json.loads(fastpose(home, "compare", "CMP_A", "CMP_B", "--json").stdout)
    assert [r["fastpose"]["commit"] for r in data["runs"]] == [source.commit] * 2  # both ran this code
    assert data["runs"][1]["fastpose_vs_first"] == "same" and data["runs"][1]["code_vs_first"] == "unknown"


# ------------------------------------------------------------------------------------------ failures
def test_exception_in_the_loss_mid_epoch_is_journaled_as_crashed(fp_home, git_repo):
    repo, _ = git_repo
    # 32 images / batch 8 = 4 steps per epoch: step 3 is inside epoch 0.
    proc = fastpose(fp_home, "train", "--name", "BOOM", "--epochs", "2", *TINY, "--train-size", "32",
                    cwd=repo, FASTPOSE_FAULT="raise@step:3")
    assert proc.returncode == 1
    assert "InjectedFault" in proc.stderr
    store = store_at(fp_home)
    run = store.resolve("BOOM")
    assert run.status == "crashed"
    assert run.error_type == "InjectedFault"
    assert "step 3" in run.error_message
    assert "Traceback (most recent call last)" in run.traceback and "faults.py" in run.traceback
    assert (run.epoch, run.step) == (0, 3)
    store.close()
    # TensorBoard keeps what the run did before it crashed: its three steps and the HParams, marked failed
    acc = tensorboard_of(run.run_dir)
    assert [e.step for e in acc.Scalars("train_step/loss")] == [0, 1, 2]
    params, status, _ = hparams_of(acc)
    assert (params["status"], status) == ("crashed", "STATUS_FAILURE")


def test_nan_loss_stops_the_run_as_diverged_naming_the_term(fp_home, git_repo, tmp_path):
    """Also: a torchvision-format resnet18 file (layer4 and fc included) trains through --weights, and the
    checkpoint holds the file's weights without layer4 or fc."""
    import torch

    from fastpose.pose.backbones import build_backbone

    torch.manual_seed(123)  # not the run's seed: its own initialisation would differ from the file everywhere
    weights = build_backbone("resnet18").state_dict()
    assert any(k.startswith("layer4.") for k in weights) and "fc.weight" in weights
    torch.save(weights, tmp_path / "resnet18-imagenet.pth")
    repo, _ = git_repo
    proc = fastpose(fp_home, "train", "--name", "NAN", "--epochs", "3", *TINY, "--weights",
                    str(tmp_path / "resnet18-imagenet.pth"), cwd=repo, FASTPOSE_FAULT="nan:loss_rot@step:2")
    assert proc.returncode == 3, proc.stderr
    store = store_at(fp_home)
    run = store.resolve("NAN")
    assert run.status == "diverged"
    assert "loss_rot is nan" in run.error_message and "epoch 1, step 2" in run.error_message
    assert (run.epoch, run.step) == (1, 2)
    assert epochs_of(store, run.id) == [0]  # epoch 1 never finished, nothing NaN was journaled
    store.close()
    params, status, _ = hparams_of(tensorboard_of(run.run_dir))
    assert (params["status"], status) == ("diverged", "STATUS_FAILURE")

    assert run.label.endswith("-resnet18-imagenet") and run.config["model"]["weights"].endswith("resnet18-imagenet.pth")
    state = load_torch_file(Path(run.run_dir) / "checkpoints" / "last.ckpt")
    state = state["state_dict"]
    assert not [k for k in state if "layer4" in k or ".fc." in k]
    # two small AdamW steps (warm-up) moved the file's weights by far less than two initialisations differ
    conv1 = state["model.encoder.conv1.weight"]
    torch.manual_seed(0)
    fresh = build_backbone("resnet18").state_dict()["conv1.weight"]  # an initialisation of the run's seed
    assert (conv1 - weights["conv1.weight"]).abs().max() < 0.01 < 0.05 < (fresh - weights["conv1.weight"]).abs().max()


def test_an_error_before_the_run_starts_writes_nothing(fp_home, tmp_path):
    proc = fastpose(fp_home, "train", "--name", "BAD", "--weights", str(tmp_path / "missing.pth"))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --weights") and len(proc.stderr.strip().splitlines()) == 1
    assert not (fp_home / "fastpose.db").exists()


def test_sigint_interrupts_with_a_checkpoint_and_resume_continues_the_epochs(fp_home, git_repo):
    repo, _ = git_repo
    proc = start_background(fp_home, "CTRLC", repo)
    wait_for_epochs(fp_home, proc, 1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    store = store_at(fp_home)
    parent = store.resolve("CTRLC")
    assert parent.status == "interrupted", out
    assert "SIGINT" in parent.error_message
    params, status, _ = hparams_of(tensorboard_of(parent.run_dir))
    assert (params["status"], status) == ("interrupted", "STATUS_FAILURE")
    last = Path(parent.run_dir) / "checkpoints" / "last.ckpt"
    assert last.is_file()
    done = epochs_of(store, parent.id)
    store.close()

    target = max(done) + 3
    # the display options of train work on resume too (they change the new run's config, nothing else)
    resumed = fastpose(fp_home, "resume", "CTRLC", "--epochs", str(target), "--no-progress", "--log-images", "0", cwd=repo)
    assert resumed.returncode == 0, resumed.stderr
    store = store_at(fp_home)
    child = store.list_runs()[0]
    assert child.parent_id == parent.id and child.status == "completed" and child.name == "CTRLC"
    assert child.checkpoint == str(last)
    assert child.config["train"]["log_images"] == 0 and child.config["train"]["progress_bar"] is False
    more = epochs_of(store, child.id)
    assert more[0] == max(done) + 1 and more[-1] == target - 1  # the history continues the parent's epochs
    assert more == list(range(more[0], target))
    note = " ".join(n.text for n in store.notes(child.id))
    assert f"resumed from #{parent.id} CTRLC" in note and "train.epochs 100000 -> " + str(target) in note
    assert "progress_bar" not in note and "log_images" not in note  # display options are no config change
    assert "code: unchanged" in note
    store.close()


def test_heartbeat_while_running_and_sigterm_interrupts(fp_home, git_repo):
    repo, _ = git_repo
    proc = start_background(fp_home, "TERM", repo, FASTPOSE_HEARTBEAT_S="0.3")
    wait_for_epochs(fp_home, proc, 1)
    beats = []
    for _ in range(90):  # beats every 0.3 s (thread) and at every epoch end; a loaded machine needs slack
        store = reader_at(fp_home)
        beats.append(store.resolve("TERM").heartbeat_at)
        store.close()
        if beats[-1] > beats[0]:
            break
        time.sleep(1.0)
    assert beats[-1] > beats[0]
    assert proc.poll() is None, "the run ended before the signal"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    store = store_at(fp_home)
    run = store.resolve("TERM")
    assert run.status == "interrupted" and "SIGTERM" in run.error_message
    assert (Path(run.run_dir) / "checkpoints" / "last.ckpt").is_file()
    store.close()


def test_sigkill_shows_lost_and_resume_continues_from_last_checkpoint(fp_home, git_repo):
    repo, _ = git_repo
    proc = start_background(fp_home, "KILLED", repo)
    wait_for_epochs(fp_home, proc, 1)
    proc.kill()
    proc.wait(timeout=30)
    journal = fastpose(fp_home, "journal", "--json")
    assert journal.returncode == 0, journal.stderr
    assert json.loads(journal.stdout)[0]["status"] == "lost"

    store = store_at(fp_home)
    parent = store.resolve("KILLED")
    ckpt = load_torch_file(Path(parent.run_dir) / "checkpoints" / "last.ckpt")
    store.close()
    # Changing the code between the runs shows in the resumed run's note.
    (repo / "experiment.txt").write_text("changed after the kill\n")
    resumed = fastpose(fp_home, "resume", "KILLED", "--epochs", str(ckpt["epoch"] + 3), "--name", "KILLED_CONT", cwd=repo)
    assert resumed.returncode == 0, resumed.stderr
    store = store_at(fp_home)
    child = store.resolve("KILLED_CONT")
    assert child.parent_id == parent.id and child.status == "completed"
    assert epochs_of(store, child.id) == [ckpt["epoch"] + 1, ckpt["epoch"] + 2]
    note = " ".join(n.text for n in store.notes(child.id))
    assert "uncommitted changes differ" in note  # the name aside; the epochs are the checkpoint's + 3
    assert note.endswith(f"config: train.epochs 100000 -> {ckpt['epoch'] + 3}"), note
    assert child.git_dirty is True
    store.close()


def test_resume_without_checkpoint_is_one_line_and_writes_nothing(fp_home, tmp_path):
    from fastpose.journal.store import JournalStore

    store = JournalStore.open()
    store.start_run(name="NOCKPT", label="26-11-28/10-00-NOCKPT-SYNTHETIC-resnet18-scratch", run_dir=str(tmp_path / "gone"))
    before = store.counts()
    store.close()
    proc = fastpose(fp_home, "resume", "NOCKPT")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no checkpoint" in lines[0]
    store = store_at(fp_home)
    assert store.counts() == before
    store.close()


# ------------------------------------------------------------------------------------------ scale out
def test_ddp_on_two_cpu_processes_journals_exactly_one_run(fp_home, git_repo):
    repo, head = git_repo
    proc = fastpose(fp_home, "train", "--name", "DDP", "--epochs", "2", *TINY,
                    "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    store = store_at(fp_home)
    runs = store.list_runs()
    assert len(runs) == 1
    run = runs[0]
    assert run.status == "completed" and run.git_commit == head
    assert epochs_of(store, run.id) == [0, 1]  # one value per epoch: reduced across the ranks, logged once
    assert (Path(run.run_dir) / "checkpoints" / "last.ckpt").is_file()
    assert len(list((fp_home / "runs").rglob("events.out.tfevents*"))) == 1
    store.close()


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one_and_resume_works(fp_home, git_repo):
    """Killed while writing the epoch-1 checkpoint: the epoch-0 last.ckpt still loads, the run shows as lost,
    and resume continues from epoch 1."""
    repo, _ = git_repo
    # Two steps per epoch (TINY): step 2 is the first step of epoch 1, so the first checkpoint written at or
    # after it is the end-of-epoch-1 one, while epoch 0's last.ckpt already exists.
    proc = fastpose(fp_home, "train", "--name", "CKPTKILL", "--epochs", "4", *TINY, cwd=repo,
                    FASTPOSE_FAULT="killsave@step:3")
    assert proc.returncode == -9, (proc.returncode, proc.stderr[-2000:])
    journal = fastpose(fp_home, "journal", "--json")
    assert journal.returncode == 0, journal.stderr
    assert json.loads(journal.stdout)[0]["status"] == "lost"

    store = store_at(fp_home)
    parent = store.resolve("CKPTKILL")
    store.close()
    ckpt_dir = Path(parent.run_dir) / "checkpoints"
    ckpt = load_torch_file(ckpt_dir / "last.ckpt")
    assert ckpt["epoch"] == 0 and ckpt["state_dict"], sorted(ckpt)
    assert not [p for p in ckpt_dir.iterdir() if p.name.startswith(".") or p.suffix not in (".ckpt",)]

    resumed = fastpose(fp_home, "resume", "CKPTKILL", "--epochs", "3", cwd=repo)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    store = store_at(fp_home)
    child = store.resolve("CKPTKILL")
    assert child.parent_id == parent.id and child.status == "completed"
    assert epochs_of(store, child.id) == [1, 2]
    store.close()


def test_an_exception_before_fit_is_journaled_as_crashed(fp_home, git_repo):
    repo, _ = git_repo
    proc = fastpose(fp_home, "train", "--name", "PREFIT", "--epochs", "1", *TINY, cwd=repo,
                    FASTPOSE_FAULT="raise@start")
    assert proc.returncode == 1, proc.stderr[-2000:]
    store = store_at(fp_home)
    run = store.resolve("PREFIT")
    assert run.status == "crashed" and run.error_type.endswith("InjectedFault"), run
    assert "before fit" in run.error_message and "on_prepare" in run.traceback
    assert store.metric_history(run.id) == []
    store.close()
    assert not (Path(run.run_dir) / "checkpoints" / "last.ckpt").exists()
