"""Native sizes through the real `fastpose` command: `--image-size WIDTHxHEIGHT` in the config (stored form,
TOML, checkpoints), a 640x480 synthetic run that trains, draws its TensorBoard panel at 640x480 and is
evaluated, and `eval --dataset nocs` on a REAL275-style split scored against NOCS's own ground-truth files."""

from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path

import pytest

from test_training import fastpose, load_torch_file, store_at, tensorboard_of
from fastpose.config import FIT_MODES, ConfigError, RunConfig, build_config, check_type, toml_text

NATIVE_RUN = ["--image-size", "640x480", "--train-size", "2", "--val-size", "2", "--batch-size", "1", "--epochs", "1",
              "--limit-train-batches", "2", "--log-images", "1", "--no-progress"]
FIXTURE_SIZE = (64, 96)  # (height, width) of the NOCS fixture, as tests/test_nocs_gts.py writes it


# ------------------------------------------------------------------------------------ the config

@pytest.mark.parametrize("given, stored, hw", [
    (64, 64, (64, 64)), ("64", 64, (64, 64)), ("64x64", 64, (64, 64)), ("640x480", "640x480", (480, 640)),
    ("640X480", "640x480", (480, 640)), (" 96x64 ", "96x64", (64, 96)), ("480x640", "480x640", (640, 480)),
])
def test_image_size_is_stored_as_an_int_for_a_square_and_as_text_for_a_rectangle(given, stored, hw) -> None:
    config = build_config(None, {"data.image_size": given}, require_name=False)
    assert config.data.image_size == stored and type(config.data.image_size) is type(stored)
    assert config.data.image_hw == hw
    assert RunConfig.from_saved(config.to_dict()).data.image_size == stored  # journal rows and checkpoints
    assert check_type("data.image_size", stored, "int | str") == stored


def test_a_square_configs_text_is_as_before_and_a_rectangle_reads_back() -> None:
    assert "\nimage_size = 64\n" in toml_text(RunConfig().to_dict())  # existing configs and checkpoints: unchanged
    assert RunConfig().to_dict()["data"]["image_size"] == 64
    text = toml_text(build_config(None, {"data.image_size": "640x480"}, require_name=False).to_dict())
    assert '\nimage_size = "640x480"\n' in text


def test_the_label_carries_no_size() -> None:
    a = build_config(None, {"name": "N", "data.image_size": "640x480"})
    b = build_config(None, {"name": "N"})
    assert a.label() == b.label()


def test_fit_modes_match_the_science_and_older_configs_cropped() -> None:
    from fastpose.pose.camera import FIT_MODES as SCIENCE_FIT_MODES

    assert FIT_MODES == SCIENCE_FIT_MODES
    assert RunConfig().data.fit == "resize"
    # NOCS images were centre-cropped to the square before data.fit existed: a saved config says so
    assert RunConfig.from_saved({"data": {"image_size": 64}}).data.fit == "crop"
    assert RunConfig.from_saved({"data": {"fit": "letterbox"}}).data.fit == "letterbox"
    with pytest.raises(ConfigError, match="unknown fit 'stretch'"):
        build_config(None, {"data.fit": "stretch"}, require_name=False)


def test_print_config_writes_what_config_reads_back(tmp_path: Path) -> None:
    printed = fastpose(tmp_path / "home", "train", "--print-config", "--image-size", "640X480", "--fit", "letterbox")
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert '\nimage_size = "640x480"\nfit = "letterbox"\n' in printed.stdout
    (tmp_path / "c.toml").write_text(printed.stdout)
    again = fastpose(tmp_path / "home", "train", "--print-config", "--config", str(tmp_path / "c.toml"))
    assert again.returncode == 0 and again.stdout == printed.stdout
    assert not (tmp_path / "home").exists()


# ------------------------------------------------------------------ a 640x480 run, end to end

@pytest.fixture(scope="module")
def native_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("nativehome")
    proc = fastpose(home, "train", "--name", "NATIVE", *NATIVE_RUN, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home


@pytest.mark.slow
def test_a_640x480_synthetic_run_trains_a_few_steps(native_home: Path) -> None:
    store = store_at(native_home)
    try:
        run = store.resolve("NATIVE")
        assert run.status == "completed" and run.config["data"]["image_size"] == "640x480"
        assert "640" not in run.label
        points = [p for p in store.metric_history(run.id) if p.name == "train/loss"]
        assert points and all(p.value == p.value for p in points)  # finite, journaled
        ckpt = load_torch_file(Path(run.run_dir) / "checkpoints" / "last.ckpt")
        assert ckpt["hyper_parameters"]["data"]["image_size"] == "640x480" and ckpt["global_step"] == 2
        # TensorBoard's step losses: two steps at 640x480
        acc = tensorboard_of(run.run_dir)
        assert [e.step for e in acc.Scalars("train_step/loss")] == [0, 1]
        # the pose panel at the image's own size, aspect kept: [ground truth | predicted] tiles of 640x480
        panel = acc.Images("val/poses")[-1]
        assert panel.width == 2 * 640 and 480 < panel.height <= 480 + 640 // 8
    finally:
        store.close()


@pytest.mark.slow
def test_the_640x480_run_is_evaluated_at_its_size(native_home: Path) -> None:
    proc = fastpose(native_home, "eval", "NATIVE", "--split", "test", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["evaluation"]["split"] == "test" and data["evaluation"]["num_images"] == 2
    assert {"iou_50", "10deg_5cm", "miss_rate"} <= set(data["evaluation"]["metrics"])
    assert "ground_truth" not in data  # synthetic: the labels are the rendered poses
    assert Path(data["evaluation"]["plot_path"]).is_file()


# ------------------------------------------------------------- eval on NOCS's own ground-truth files

@pytest.fixture(scope="module")
def nocs_home(tmp_path_factory) -> tuple[Path, Path]:
    """A run at the fixture's size, and a NOCS root with REAL275's test split written in the authors' format
    (``export_nocs_layout(write_gts=True)``, as tests/test_nocs_gts.py writes it)."""
    from fastpose.pose.data.nocs import export_nocs_layout
    from fastpose.pose.data.synthetic import SyntheticPoseDataset

    home, root = tmp_path_factory.mktemp("nocshome"), tmp_path_factory.mktemp("nocsroot")
    source = SyntheticPoseDataset(8, image_size=FIXTURE_SIZE, seed=6, rotations="tabletop", max_objects=3)
    export_nocs_layout(source, root, "real_test", write_gts=True)
    (root / "val").mkdir()  # another split folder, for the listing
    proc = fastpose(home, "train", "--name", "NOCSEV", "--image-size", "96x64", "--train-size", "2", "--val-size", "2",
                    "--batch-size", "2", "--epochs", "1", "--log-images", "0", "--no-progress", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home, root


def _evaluations(home: Path) -> list[tuple]:
    with sqlite3.connect(home / "fastpose.db") as conn:
        return conn.execute("SELECT split, dataset, num_images, metrics FROM evaluations").fetchall()


def _gts(root: Path, scene: int, image: int) -> Path:
    return root / "gts" / "real_test" / f"results_real_test_scene_{scene}_{image:04d}.pkl"


@pytest.mark.slow
def test_eval_scores_a_real275_split_against_nocs_files(nocs_home) -> None:
    home, root = nocs_home
    before = len(_evaluations(home))
    proc = fastpose(home, "eval", "NOCSEV", "--dataset", "nocs", "--data-root", str(root), "--split", "real_test",
                    COLUMNS="160")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ground truth: NOCS files for 8 of 8 images\n" in proc.stdout
    for text in ("real_test · 8 images", "IoU50", "10°5cm", "miss rate"):
        assert text in proc.stdout, text
    rows = _evaluations(home)
    assert len(rows) == before + 1 and rows[-1][:3] == ("real_test", "nocs", 8)
    assert {"iou_50", "10deg_5cm", "miss_rate"} <= set(json.loads(rows[-1][3]))

    _gts(root, 2, 3).rename(root / "aside.pkl")  # one image without its file: its poses come from depth
    try:
        proc = fastpose(home, "eval", "NOCSEV", "--dataset", "nocs", "--data-root", str(root), "--split", "real_test",
                        "--json")
    finally:
        (root / "aside.pkl").rename(_gts(root, 2, 3))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["ground_truth"] == {"nocs_files": 7, "images": 8}


@pytest.mark.slow
def test_the_poses_eval_scores_against_are_the_files(nocs_home) -> None:
    """What `eval` builds for a NOCS split (``eval_dataset``, with the run's size and fit) holds the files' poses:
    a file moved 1 cm to the right moves its objects' labels, and nothing else."""
    import torch

    from fastpose.training.evaluate import eval_dataset

    home, root = nocs_home
    store = store_at(home)
    try:
        config = RunConfig.from_saved(store.resolve("NOCSEV").config)
    finally:
        store.close()
    data = eval_dataset(config, "real_test", "nocs", str(root))
    assert data.image_hw == FIXTURE_SIZE and data.fit == "resize" and data.ground_truth_count() == 8
    before = data[0]
    path = _gts(root, 1, 0)
    original = path.read_bytes()
    content = pickle.loads(original)  # written by the fixture above
    content["gt_RTs"][:, 0, 3] += 0.01
    path.write_bytes(pickle.dumps(content))
    try:
        after = eval_dataset(config, "real_test", "nocs", str(root))[0]
    finally:
        path.write_bytes(original)
    v = before["inst_valid"]
    assert torch.allclose(after["inst_trans"][v, 0], before["inst_trans"][v, 0] + 0.01, atol=1e-6)
    assert torch.equal(after["inst_trans"][v, 1:], before["inst_trans"][v, 1:])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing split", "file disagrees", "crafted file"])
def test_bad_nocs_evaluations_are_one_line_and_journal_nothing(nocs_home, tmp_path: Path, case: str) -> None:
    home, root = nocs_home
    before = len(_evaluations(home))
    path = _gts(root, 1, 1)
    original = path.read_bytes()
    marker = tmp_path / "ran"
    split, words = "real_test", [str(path)]
    if case == "missing split":  # NOCS has no "test" folder: REAL275's is real_test
        split, words = "test", ["no split folder 'test'", "real_test, val", "real_test"]
    elif case == "file disagrees":
        content = pickle.loads(original)  # written by the fixture above
        content["gt_class_ids"][0] = content["gt_class_ids"][0] % 6 + 1  # another class than the image shows
        path.write_bytes(pickle.dumps(content))
        words.append("lists classes")
    else:
        import os

        class Payload:
            def __reduce__(self):  # noqa: ANN204
                return (os.system, (f"touch {marker}",))

        path.write_bytes(pickle.dumps(Payload()))
        words += ["refused", "system"]
    try:
        proc = fastpose(home, "eval", "NOCSEV", "--dataset", "nocs", "--data-root", str(root), "--split", split)
    finally:
        path.write_bytes(original)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert all(w in lines[0] for w in words), (words, lines[0])
    assert not marker.exists() and len(_evaluations(home)) == before
