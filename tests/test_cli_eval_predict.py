"""`fastpose eval` and `fastpose predict` through the real CLI, on a real (tiny) trained run."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_training import fastpose

pytestmark = pytest.mark.slow

TINY = ["--image-size", "32", "--train-size", "16", "--val-size", "8", "--batch-size", "8", "--no-progress",
        "--log-images", "0", "--epochs", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("evalhome")
    proc = fastpose(home, "train", "--name", "EV", *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return home


def _evaluations(home: Path) -> list[tuple]:
    with sqlite3.connect(home / "fastpose.db") as conn:
        return conn.execute("SELECT run_id, split, dataset, num_images, metrics, plot_path FROM evaluations").fetchall()


def test_eval_prints_the_nocs_table_journals_it_and_draws_pr_curves(trained: Path) -> None:
    before = len(_evaluations(trained))
    proc = fastpose(trained, "eval", "EV", "--split", "test", COLUMNS="160")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in ("IoU50", "IoU75", "5°2cm", "10°5cm", "mean", "miss rate", "false-positive rate"):
        assert text in proc.stdout, text
    rows = _evaluations(trained)
    assert len(rows) == before + 1
    run_id, split, dataset, n, metrics, plot = rows[-1]
    assert (split, dataset, n) == ("test", "synthetic", 8)
    metrics = json.loads(metrics)
    assert {"iou_25", "iou_50", "10deg_5cm", "10deg_5cm/mug", "miss_rate", "false_positive_rate"} <= set(metrics)
    assert Path(plot).is_file() and Image.open(plot).size[0] > 300

    as_json = fastpose(trained, "eval", "EV", "--checkpoint", "last", "--json")
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    data = json.loads(as_json.stdout)
    assert data["run"]["name"] == "EV" and data["evaluation"]["split"] == "val"
    assert data["evaluation"]["checkpoint"].endswith("last.ckpt")
    assert 0 <= data["evaluation"]["metrics"]["miss_rate"] <= 1

    shown = fastpose(trained, "journal", "show", "EV", COLUMNS="200")
    assert shown.returncode == 0 and "evaluations" in shown.stdout and "test (synthetic)" in shown.stdout


def test_eval_prints_the_table_for_a_paper(trained: Path) -> None:
    before = len(_evaluations(trained))
    tex = fastpose(trained, "eval", "EV", "--latex")
    assert tex.returncode == 0, tex.stderr[-2000:]
    assert tex.stdout.startswith("% fastpose: needs \\usepackage{booktabs}")
    for part in ("\\toprule", "class & IoU25 \\ensuremath{\\uparrow}", "\\midrule\nmean & ", "\\bottomrule",
                 "Rotation-only AP (5\\textdegree{}, 10\\textdegree{}, 20\\textdegree{})"):
        assert part in tex.stdout, part
    md = fastpose(trained, "eval", "EV", "--markdown")
    assert md.returncode == 0 and "| class | IoU25 ↑ |" in md.stdout and "| mean | " in md.stdout, md.stderr[-2000:]
    assert len(_evaluations(trained)) == before + 2  # journaled like any evaluation


@pytest.mark.parametrize("args,message", [
    (["eval", "NOPE"], "NOPE"),
    (["eval", "EV", "--split", "train"], "unknown split"),
    (["eval", "EV", "--checkpoint", "/no/such.ckpt"], "no such file"),
    (["eval", "EV", "--dataset", "nocs", "--data-root", "/no/such/dir"], "--data-root"),
    (["predict", "EV", "/no/such.png"], "cannot read image '/no/such.png': No such file"),
    (["predict", "EV", "IMAGE", "--intrinsics", "1,2,3"], "--intrinsics"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(trained: Path, tmp_path: Path, args, message) -> None:
    image = tmp_path / "x.png"
    Image.new("RGB", (40, 30)).save(image)
    args = [str(image) if a == "IMAGE" else a for a in args]
    before = len(_evaluations(trained))
    proc = fastpose(trained, *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(_evaluations(trained)) == before


def test_predict_gives_poses_and_overlays_for_images_of_any_size(trained: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wide, small = tmp_path / "wide.png", tmp_path / "small.jpg"
    Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(wide)
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(small)
    out = tmp_path / "overlays"
    proc = fastpose(trained, "predict", "EV", str(wide), str(small), "--intrinsics", "80,80,39.5,23.5",
                    "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert [Path(r["image"]).name for r in data["images"]] == ["wide.png", "small.jpg"]
    first = data["images"][0]
    assert (first["width"], first["height"]) == (80, 48)
    assert first["intrinsics"] == "given"
    assert first["K"][0][2] == pytest.approx(40.0)  # OpenCV cx 39.5 -> pixel-centre convention 40
    for r in data["images"]:
        assert Image.open(r["overlay"]).size == (r["overlay_width"], r["overlay_height"])
        assert max(r["overlay_width"], r["overlay_height"]) >= 512  # small images are drawn larger
        for o in r["objects"]:
            assert o["class"] in ("bottle", "bowl", "camera", "can", "laptop", "mug") and 0 <= o["score"] <= 1
            assert len(o["quaternion"]) == 4 and abs(np.linalg.norm(o["quaternion"]) - 1) < 1e-3
            assert len(o["translation"]) == 3 and len(o["size"]) == 3 and min(o["size"]) > 0


def test_a_9d_run_trains_evaluates_and_predicts(trained: Path, tmp_path: Path) -> None:
    """The 9D head (SVD projection) end to end through the CLI: train, eval (journaled), predict. The 6D head
    shares every step but the projection (tests/test_pose_training.py trains both in-process)."""
    proc = fastpose(trained, "train", "--name", "ROT9", "--rotation", "9d", "--loss", "chordal", *TINY,
                    "--train-size", "8", "--val-size", "4", "--batch-size", "4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    before = len(_evaluations(trained))
    ev = fastpose(trained, "eval", "ROT9", "--json")
    assert ev.returncode == 0, ev.stderr[-2000:]
    data = json.loads(ev.stdout)
    assert data["run"]["name"] == "ROT9" and len(_evaluations(trained)) == before + 1
    assert {"10deg", "5deg_5cm", "miss_rate", "rot_err_median"} <= set(data["evaluation"]["metrics"])
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(image)
    pred = fastpose(trained, "predict", "ROT9", str(image), "--out", str(tmp_path / "ov"), "--json")
    assert pred.returncode == 0, pred.stderr[-2000:]
    objects = json.loads(pred.stdout)["images"][0]["objects"]
    for o in objects:  # an untrained net may find nothing; what it finds has a unit, canonical quaternion
        assert abs(np.linalg.norm(o["quaternion"]) - 1) < 1e-3 and o["quaternion"][3] >= 0


def test_predict_never_overwrites_an_overlay_it_wrote(trained: Path, tmp_path: Path) -> None:
    """Images with one stem (a/x.png, b/x.png, x.jpg) get overlays of their own, each named on its line."""
    from image_files import solid_png

    colours = [(10, 20, 200), (200, 20, 30), (20, 180, 40)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    images = [solid_png(tmp_path / "a" / "x.png", 48, 40, colours[0]), solid_png(tmp_path / "b" / "x.png", 48, 40,
                                                                                  colours[1])]
    Image.new("RGB", (48, 40), colours[2]).save(tmp_path / "x.jpg", quality=100)
    images.append(tmp_path / "x.jpg")
    out = tmp_path / "o"
    proc = fastpose(trained, "predict", "EV", *map(str, images), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = ["x-poses.png", "x-poses-2.png", "x-poses-3.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    lines = [line for line in proc.stdout.splitlines() if "overlay" in line]
    for image, name, colour, line in zip(images, names, colours, lines):
        assert line.startswith(f"{image}:") and f"overlay {out / name} (" in line
        pixels = np.asarray(Image.open(out / name)).reshape(-1, 3)
        counts = [int((np.abs(pixels.astype(int) - c).max(1) <= 2).sum()) for c in colours]
        assert counts[colours.index(colour)] > 0 and sum(counts) == counts[colours.index(colour)]  # its own image


def test_predict_on_a_100_megapixel_image_stays_bounded(trained: Path, tmp_path: Path) -> None:
    """The overlay is drawn at a bounded size: a 10000 x 10000 image gets a 4096 x 4096 overlay, and the
    whole command stays under 3 GB (drawn at 4x, the canvas alone was 4.8 GB)."""
    from image_files import solid_png

    from fastpose.training.predict import OVERLAY_MAX_PIXELS
    from test_training import env_for

    image = solid_png(tmp_path / "big.png", 10000, 10000)
    out = tmp_path / "o"
    measure = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode)")
    proc = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "fastpose", "predict", "EV",
                           str(image), "--out", str(out), "--json"], env=env_for(trained), capture_output=True,
                          text=True, timeout=600)
    peak_kb, code = map(int, proc.stdout.strip().splitlines()[-1].split())
    assert code == 0, proc.stderr[-2000:]
    result = json.loads("\n".join(proc.stdout.strip().splitlines()[:-1]))["images"][0]
    assert (result["width"], result["height"]) == (10000, 10000)
    assert (result["overlay_width"], result["overlay_height"]) == (4096, 4096) and 4096 ** 2 <= OVERLAY_MAX_PIXELS
    assert Image.open(result["overlay"]).size == (4096, 4096)
    assert peak_kb < 3 * 1024 * 1024, f"peak {peak_kb / 1024 / 1024:.1f} GB"
