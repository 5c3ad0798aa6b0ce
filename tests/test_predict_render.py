"""`fastpose render` and an honest `fastpose predict`: rendered test images with their labels, the whole image
in front of the network (letterboxed to the run's size), the camera it assumed said out loud, a score
threshold stated, a warning when a synthetic run meets an image that is not a render, overlays a person can
read; and poses that land where the labels say the objects are, across the whole 640x480 frame."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_training import fastpose

TINY = ["--image-size", "32", "--train-size", "16", "--val-size", "8", "--batch-size", "8", "--no-progress",
        "--log-images", "0", "--epochs", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("predicthome")
    proc = fastpose(home, "train", "--name", "EV", *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return home


def _render(home: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return fastpose(home, "render", "--out", str(out), *args)


# ------------------------------------------------------------------------------------------------ render

def test_render_writes_images_and_their_labels(tmp_path: Path) -> None:
    """Images at 640x480 (the default), each with a JSON of its ground truth that is the synthetic set's own,
    tagged as renders; nothing is overwritten without --force; bad values are one line each."""
    from fastpose.pose.data.synthetic import SyntheticPoseDataset, denormalize_image

    home, out = tmp_path / "home", tmp_path / "renders"
    proc = _render(home, out, "--n", "3", "--seed", "14")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote 3 images (640x480, seed 14)" in proc.stdout and "--intrinsics 480,480,319.5,239.5" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [f"render-s14-{i}.{e}" for i in range(3) for e in ("json", "png")]
    truth = SyntheticPoseDataset(3, image_size=(480, 640), seed=14, rotations="tabletop").render_batch(range(3))
    for i in range(3):
        image = Image.open(out / f"render-s14-{i}.png")
        assert image.size == (640, 480) and json.loads(image.info["fastpose-render"])["index"] == i
        rgb = (denormalize_image(truth["image"][i]) * 255).permute(1, 2, 0).numpy()
        assert np.abs(np.asarray(image, dtype=np.float64) - rgb).max() <= 0.5 + 1e-6  # the render, rounded
        labels = json.loads((out / f"render-s14-{i}.json").read_text())
        assert labels["K"] == [[480.0, 0.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]]
        valid = truth["inst_valid"][i].nonzero().flatten().tolist()
        assert len(labels["objects"]) == len(valid) >= 1
        for obj, k in zip(labels["objects"], valid):
            assert np.allclose(obj["translation"], truth["inst_trans"][i, k], atol=1e-5)
            assert np.allclose(obj["size"], truth["inst_size"][i, k], atol=1e-5)
            assert np.allclose(obj["quaternion"], truth["inst_quat"][i, k], atol=1e-5)
            v, u = (truth["instance_mask"][i] == k + 1).nonzero(as_tuple=True)
            assert obj["box"] == [int(u.min()), int(v.min()), int(u.max()) + 1, int(v.max()) + 1]
            assert obj["pixels"] == len(u) and 0 <= obj["box"][0] < obj["box"][2] <= 640
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = _render(home, out, "--n", "3", "--seed", "14")
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing touched
    assert _render(home, out, "--n", "1", "--seed", "14", "--force", "--image-size", "96x64").returncode == 0
    assert Image.open(out / "render-s14-0.png").size == (96, 64)
    for args, message in ((["--n", "0"], "--n"), (["--image-size", "4x4"], "--image-size"),
                          (["--image-size", "640x"], "WIDTHxHEIGHT"), (["--seed", "-1"], "--seed"),
                          (["--rotations", "any"], "--rotations")):
        bad = _render(home, tmp_path / "bad", *args)
        assert bad.returncode == 2 and bad.stderr.startswith("error: ") and message in bad.stderr, bad.stderr
        assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------------------------------------ predict

@pytest.mark.slow
def test_predict_says_what_it_assumed_and_where_it_is_out_of_its_domain(trained: Path, tmp_path: Path) -> None:
    renders, photo = tmp_path / "r", tmp_path / "photo.jpg"
    assert _render(trained, renders, "--n", "1", "--seed", "3").returncode == 0
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(photo)
    render = renders / "render-s3-0.png"
    proc = fastpose(trained, "predict", "EV", str(render), str(photo), "--out", str(tmp_path / "o"), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2, proc.stderr
    assert "no --intrinsics: assumed the synthetic camera" in warnings[0]
    assert "render-s3-0.png 640x480: fx = fy = 480, cx = 320, cy = 240" in warnings[0]
    assert "trained on rendered synthetic scenes only, and 'photo.jpg' is not one" in warnings[1]
    assert "render-s3-0" not in warnings[1]  # a render is what it learned on
    data = json.loads(proc.stdout)
    assert data["min_score"] == 0.5
    first, second = data["images"]
    assert first["intrinsics"] == second["intrinsics"] == "assumed"
    assert first["K"] == [[480.0, 0.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]]
    assert second["K"] == [[200.0, 0.0, 150.0], [0.0, 200.0, 100.0], [0.0, 0.0, 1.0]]  # f = the shorter side
    # the whole 640x480 image letterboxed into the run's 32x32 input: 32/640 = 0.05, 24 rows, 4 of padding above
    assert first["network_input"] == {"width": 32, "height": 32, "fit": "letterbox", "scale": [0.05, 0.05],
                                      "pad": [0, 4]}
    assert (first["overlay_width"], first["overlay_height"]) == (640, 480)  # at the image's own resolution
    assert (second["overlay_width"], second["overlay_height"]) == (600, 400)  # a small image: at least 512 px
    for r in data["images"]:
        assert Image.open(r["overlay"]).size == (r["overlay_width"], r["overlay_height"])
        assert all(o["score"] >= 0.5 for o in r["objects"]) and r["below_min_score"] >= 0

    every = fastpose(trained, "predict", "EV", str(photo), "--out", str(tmp_path / "o"), "--json", "--min-score", "0")
    assert every.returncode == 0, every.stderr[-2000:]
    all_objects = json.loads(every.stdout)["images"][0]
    assert len(all_objects["objects"]) == len(second["objects"]) + second["below_min_score"]
    assert all_objects["below_min_score"] == 0

    given = fastpose(trained, "predict", "EV", str(render), "--out", str(tmp_path / "o"), "--intrinsics",
                     "480,480,319.5,239.5")
    assert given.returncode == 0, given.stderr[-2000:]
    assert "warning" not in given.stderr  # the camera was given, and the image is a render
    assert "object(s) scoring >= 0.5 (--min-score;" in given.stdout and "below); overlay" in given.stdout
    for bad in ("1.5", "-0.1", "nan"):
        refused = fastpose(trained, "predict", "EV", str(render), "--min-score", bad)
        assert refused.returncode == 2 and refused.stderr.startswith("error: ") and "--min-score" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("run_hw", [(256, 256), (240, 320)])
def test_predict_draws_boxes_where_the_objects_are_across_the_whole_640x480_frame(tmp_path: Path, run_hw) -> None:
    """Images and labels from `fastpose render`, through predict's own preparation (the whole frame
    letterboxed to a square run and to a 4:3 one), post-processing and drawing. The network is replaced by
    outputs that say the rendered truth at its input (a tiny CPU-trained network finds nothing reliably, and
    the network is not what is tested here): every object's pixels, as its label gives them, lie inside the
    projected 3D box of a detection of its class, also objects at the image's left and right edges, which a
    centre crop to a square dropped; and the overlay draws there."""
    from test_pose_native_size import _perfect_output

    import torch

    from fastpose.pose.camera import fit_frame
    from fastpose.pose.data.synthetic import SyntheticPoseDataset, normalize_image
    from fastpose.training.predict import camera, detections, draw_overlay, prepare, read_image

    out = tmp_path / "r"
    assert _render(tmp_path / "home", out, "--n", "6", "--seed", "14").returncode == 0
    truth = SyntheticPoseDataset(6, image_size=(480, 640), seed=14, rotations="tabletop").render_batch(range(6))
    left = right = checked = 0
    for i in range(6):
        labels = json.loads((out / f"render-s14-{i}.json").read_text())
        image = read_image(out / f"render-s14-{i}.png", 10**8)
        K = camera(*image.size, None)
        x, K_net, frame = prepare(image, run_hw, K)
        # what a perfect network would output for the input predict built: the truth, letterboxed, with the
        # letterboxed image's true camera; predict's own K_net then turns it back into poses
        letterbox = fit_frame((480, 640), run_hw, "letterbox")
        assert frame == letterbox and x.shape == (3, *run_hw)
        expected = letterbox.resample(normalize_image(torch.from_numpy(np.asarray(image) / 255).permute(2, 0, 1)))
        assert (x - expected.float()).abs().max() < 1e-4  # the whole image is what the network sees
        net = {key: letterbox.resample(truth[key][i], "nearest-exact")[None]
               for key in ("class_mask", "instance_mask", "quaternion_map")}
        net.update({key: truth[key][i:i + 1] for key in ("inst_trans", "inst_size")},
                   intrinsics=torch.from_numpy(letterbox.intrinsics(K)).float()[None])
        objects, _ = detections(lambda batch: _perfect_output(net), x, K_net, 0.5)
        assert draw_overlay(image, objects, K, tmp_path / "o.png") == (640, 480)
        overlay = np.asarray(Image.open(tmp_path / "o.png")).astype(int)
        source = np.asarray(image).astype(int)
        for obj in labels["objects"]:
            if obj["pixels"] < 400:  # a sliver behind another object may vanish in the downsampling
                continue
            hits = [o for o in objects if o["class"] == obj["class"]
                    and np.linalg.norm(np.subtract(o["translation"], obj["translation"])) < 0.01]
            assert hits, (i, obj["class"], obj["box"])
            corners = _box_corners(hits[0])
            uv = (corners @ K.T)[:, :2] / (corners @ K.T)[:, 2:]
            x0, y0, x1, y1 = obj["box"]
            assert uv[:, 0].min() <= x0 + 1 and uv[:, 0].max() >= x1 - 1, (i, obj["class"])
            assert uv[:, 1].min() <= y0 + 1 and uv[:, 1].max() >= y1 - 1, (i, obj["class"])
            inside = [(u, v) for u, v in uv if 2 <= u < 638 and 2 <= v < 478]
            drawn = [np.abs(overlay[int(v) - 2:int(v) + 3, int(u) - 2:int(u) + 3]
                            - source[int(v) - 2:int(v) + 3, int(u) - 2:int(u) + 3]).max() > 40 for u, v in inside]
            assert inside and sum(drawn) >= len(inside) - 1, (i, obj["class"])  # a line at its corners
            checked += 1
            left, right = left + int(x0 < 80), right + int(x1 > 560)  # a centred 480x480 crop lost these
    assert checked >= 6 and left >= 1 and right >= 1, (checked, left, right)


def _box_corners(obj: dict) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    R = Rotation.from_quat(obj["quaternion"]).as_matrix()
    signs = np.array([[x, y, z] for x in (-.5, .5) for y in (-.5, .5) for z in (-.5, .5)])
    return (signs * np.asarray(obj["size"])) @ R.T + np.asarray(obj["translation"])


def test_predict_and_render_need_no_torch_to_refuse(tmp_path: Path) -> None:
    """Bad values are refused before torch is imported (a quick answer)."""
    code = ("import sys; from fastpose.cli import run; "
            "code = run(['render', '--out', sys.argv[1], '--n', '0']); print(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x")], capture_output=True, text=True)
    assert done.stdout.split() == ["2", "False"], done.stderr
