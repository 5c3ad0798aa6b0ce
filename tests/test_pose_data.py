"""Synthetic scenes and the NOCS loader: batch format, determinism, geometric consistency, round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fastpose.errors import FastposeError
from fastpose.pose.data.nocs import NOCSDataset, export_nocs_layout, umeyama
from fastpose.pose.data.synthetic import SYMMETRIC_CLASSES, SyntheticPoseDataset
from fastpose.pose.metrics import rotation_error_deg
from fastpose.pose.rotations import quat_to_rotmat
from rotation_utils import random_quat

SPEC = {  # docs/ARCHITECTURE.md, batch format (per sample, M = max_objects)
    "image": ((3, "H", "W"), torch.float32),
    "class_mask": (("H", "W"), torch.int64),
    "instance_mask": (("H", "W"), torch.int64),
    "quaternion_map": ((4, "H", "W"), torch.float32),
    "nocs": ((3, "H", "W"), torch.float32),
    "depth": (("H", "W"), torch.float32),
    "intrinsics": ((3, 3), torch.float32),
    "inst_valid": (("M",), torch.bool),
    "inst_class": (("M",), torch.int64),
    "inst_quat": (("M", 4), torch.float32),
    "inst_rot": (("M", 3, 3), torch.float32),
    "inst_box_rot": (("M", 3, 3), torch.float32),
    "inst_trans": (("M", 3), torch.float32),
    "inst_size": (("M", 3), torch.float32),
    "inst_handle_visible": (("M",), torch.bool),
}


def check_format(sample: dict, size: int, M: int) -> None:
    assert set(sample) == set(SPEC)
    for key, (shape, dtype) in SPEC.items():
        want = tuple({"H": size, "W": size, "M": M}.get(d, d) for d in shape)
        assert tuple(sample[key].shape) == want, key
        assert sample[key].dtype == dtype, key


def camera_points(sample: dict) -> torch.Tensor:
    """depth * K^-1 [u + 0.5, v + 0.5, 1] per pixel: (3, H, W)."""
    K, depth = sample["intrinsics"], sample["depth"]
    H, W = depth.shape
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    rays = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)])
    return rays * depth


@pytest.mark.parametrize("rotations", ["so3", "tabletop"])
def test_synthetic_format_and_consistency(rotations: str) -> None:
    ds = SyntheticPoseDataset(12, image_size=64, seed=5, rotations=rotations, max_objects=3)
    assert len(ds) == 12
    for i in range(len(ds)):
        s = ds[i]
        check_format(s, 64, 3)
        valid = s["inst_valid"]
        inst, cls = s["instance_mask"], s["class_mask"]
        assert valid.any() and ((inst > 0) == (cls > 0)).all() and inst.max() <= 3
        assert ((s["depth"] > 0) == (inst > 0)).all()
        assert torch.isfinite(s["image"]).all() and s["image"].std() > 0.3
        pts = camera_points(s)
        for k in range(3):
            m = inst == k + 1
            if not valid[k]:
                assert not m.any() and s["inst_class"][k] == 0 and s["inst_quat"][k].abs().sum() == 0
                continue
            assert (cls[m] == s["inst_class"][k]).all()
            q, R = s["inst_quat"][k], s["inst_rot"][k]
            assert q[3] >= 0 and abs(float(q.norm()) - 1) < 1e-5
            assert torch.allclose(quat_to_rotmat(q), R, atol=1e-5)
            assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-5) and abs(float(torch.det(R)) - 1) < 1e-5
            assert (s["quaternion_map"][:, m] == q[:, None]).all()
            nocs = s["nocs"][:, m]
            assert nocs.min() >= 0 and nocs.max() <= 1
            # rotating NOCS by the pose reproduces the camera-space points seen in the depth map
            scale = s["inst_size"][k].norm()
            rebuilt = R @ ((nocs - 0.5) * scale) + s["inst_trans"][k][:, None]
            assert (rebuilt - pts[:, m]).abs().max() < 1e-4
        # background carries no targets
        bg = inst == 0
        assert s["quaternion_map"][:, bg].abs().sum() == 0 and s["nocs"][:, bg].abs().sum() == 0


def test_synthetic_sizes_follow_their_class_prior() -> None:
    """Each instance's box diagonal lies within SIZE_SPREAD of its class's (the size prior that bounds any
    monocular depth estimate; see CLASS_DIAGONAL), and the classes differ in size."""
    from fastpose.pose.data.synthetic import CLASS_DIAGONAL, SIZE_SPREAD

    data = SyntheticPoseDataset(24, image_size=32, seed=7)
    seen: dict[int, list[float]] = {}
    for i in range(len(data)):
        s = data[i]
        for k in torch.nonzero(s["inst_valid"])[:, 0].tolist():
            c = int(s["inst_class"][k])
            seen.setdefault(c, []).append(float(s["inst_size"][k].norm()) / CLASS_DIAGONAL[c])
    ratios = [r for rs in seen.values() for r in rs]
    assert len(seen) >= 5 and min(ratios) >= 1 - SIZE_SPREAD - 1e-6 and max(ratios) <= 1 + SIZE_SPREAD + 1e-6
    assert max(ratios) - min(ratios) > SIZE_SPREAD  # the spread is used, not a constant


def test_synthetic_deterministic_per_seed_and_index() -> None:
    a = SyntheticPoseDataset(6, seed=3)
    b = SyntheticPoseDataset(6, seed=3)
    c = SyntheticPoseDataset(6, seed=4)
    for i in (0, 5, 2):  # any order of access
        sa, sb = a[i], b[i]
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(a[0]["image"], c[0]["image"])
    assert not torch.equal(a[0]["image"], a[1]["image"])
    with pytest.raises(IndexError):
        a[6]


def test_synthetic_batched_rendering_is_bit_identical_to_one_by_one() -> None:
    """A DataLoader renders a whole batch in one call (``__getitems__``); a sample must not depend on its
    batch-mates, their number or their order."""
    ds = SyntheticPoseDataset(40, seed=11, max_objects=3)
    alone = {i: ds[i] for i in (3, 17, 0, 39, 25)}
    for indices in ([3, 17, 0, 39, 25], [39, 3], list(range(40)), [25, 25, 0]):
        for i, sample in zip(indices, ds.__getitems__(indices)):
            if i in alone:
                assert all(torch.equal(sample[k], alone[i][k]) for k in sample), (i, indices)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))  # the loader uses __getitems__
    assert torch.equal(batch["image"][3], alone[3]["image"]) and torch.equal(batch["nocs"][0], alone[0]["nocs"])
    assert ds.render([]) == []
    with pytest.raises(IndexError):
        ds.render([1, 40])


def test_scenes_ray_cast_on_their_device_give_the_loader_batch() -> None:
    """``render_device=accelerator`` splits rendering: the loader samples ``scenes`` (CPU tensors) and the
    training device ray-casts them. The batch equals the loader path's collated batch bit for bit, and every
    tensor of the ray cast is made on the scenes' device: with factories defaulting to the ``meta`` device,
    a tensor made without ``device=`` would be a meta tensor and the result could not equal the CPU one
    (the stand-in, on a CPU-only machine, for ray-casting on a GPU)."""
    from fastpose.pose.data.synthetic import SceneSampler
    from fastpose.training.datamodule import _scenes_batch

    ds = SyntheticPoseDataset(40, image_size=32, seed=4, rotations="tabletop", max_objects=3)
    indices = [7, 0, 39, 7, 12]
    want = torch.utils.data.default_collate(ds.render(indices))
    scenes = ds.scenes(indices)
    assert all(v.device.type == "cpu" for v in scenes.values())
    with torch.device("meta"):
        got = ds.render_scenes(scenes)
    assert set(got) == set(want)
    for k in want:
        assert got[k].device.type == "cpu" and got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    loader = torch.utils.data.DataLoader(SceneSampler(ds), batch_size=5, collate_fn=_scenes_batch)
    batch = ds.render_scenes(next(iter(loader))["scenes"])
    assert torch.equal(batch["image"], ds.render_batch(range(5))["image"])


def test_synthetic_covers_classes_counts_and_sizes() -> None:
    ds = SyntheticPoseDataset(60, image_size=32, seed=0, max_objects=2)
    classes, counts = set(), set()
    for i in range(len(ds)):
        s = ds[i]
        check_format(s, 32, 2)
        classes |= set(s["inst_class"][s["inst_valid"]].tolist())
        counts.add(int(s["inst_valid"].sum()))
    assert classes == {1, 2, 3, 4, 5, 6} and counts == {1, 2}


def test_symmetric_classes_canonical_and_tabletop_upright() -> None:
    ds = SyntheticPoseDataset(40, seed=1, rotations="tabletop")
    for i in range(len(ds)):
        s = ds[i]
        for k in range(3):
            if not s["inst_valid"][k]:
                continue
            R = s["inst_rot"][k]
            # tabletop: the object's up axis points up in the image (camera -y), within the tilt + elevation
            assert float(R[1, 1]) < -0.3
            if int(s["inst_class"][k]) in SYMMETRIC_CLASSES:
                # canonical yaw: the object's x axis is perpendicular to the camera's z axis
                assert abs(float(R[2, 0])) < 1e-5


def test_umeyama_recovers_similarity() -> None:
    g = np.random.default_rng(0)
    src = g.normal(size=(50, 3))
    R = quat_to_rotmat(random_quat(1, torch.Generator().manual_seed(0), dtype=torch.float64))[0].numpy()
    dst = 0.37 * src @ R.T + np.array([0.1, -0.2, 0.6])
    s, R2, t = umeyama(src, dst)
    assert abs(s - 0.37) < 1e-9 and np.abs(R2 - R).max() < 1e-9 and np.abs(t - [0.1, -0.2, 0.6]).max() < 1e-9


def test_nocs_round_trip_recovers_poses(tmp_path: Path) -> None:
    source = SyntheticPoseDataset(10, image_size=64, seed=7)
    stems = export_nocs_layout(source, tmp_path, "val", n=10, per_scene=4)
    assert len(stems) == 10 and (tmp_path / "val" / "scene_3" / "0001_color.png").is_file()
    loaded = NOCSDataset(tmp_path, "val", image_size=64, max_objects=3)
    assert len(loaded) == 10
    n_checked = 0
    for i in range(10):  # sorted stems: scene_1/0000.. scene_3/0001, i.e. the export order
        a, b = source[i], loaded[i]
        check_format(b, 64, 3)
        assert torch.equal(a["instance_mask"], b["instance_mask"]) and torch.equal(a["class_mask"], b["class_mask"])
        assert torch.equal(a["inst_valid"], b["inst_valid"]) and torch.equal(a["inst_class"], b["inst_class"])
        v = a["inst_valid"]
        err = rotation_error_deg(b["inst_quat"][v], a["inst_quat"][v])  # poses derived by Umeyama
        assert err.max() <= 1.0, err
        assert (b["inst_trans"][v] - a["inst_trans"][v]).norm(dim=-1).max() < 2e-3
        assert (b["inst_size"][v].norm(dim=-1) - a["inst_size"][v].norm(dim=-1)).abs().max() < 5e-3
        assert torch.allclose(b["intrinsics"], a["intrinsics"])
        assert (b["image"] - a["image"]).abs().max() < 0.02  # 8-bit colour
        assert (b["depth"] - a["depth"]).abs().max() <= 5e-4 + 1e-6  # millimetres
        assert (b["quaternion_map"][:, b["instance_mask"] > 0].norm(dim=0) - 1).abs().max() < 1e-5
        n_checked += int(v.sum())
    assert n_checked >= 15


def test_nocs_pose_file_and_resize(tmp_path: Path) -> None:
    source = SyntheticPoseDataset(2, image_size=64, seed=8)
    export_nocs_layout(source, tmp_path, "train", write_pose=True)
    full = NOCSDataset(tmp_path, "train", image_size=64)
    a, b = source[0], full[0]
    v = a["inst_valid"]
    assert torch.allclose(b["inst_rot"][v], a["inst_rot"][v], atol=1e-6)  # given poses are used as is
    half = NOCSDataset(tmp_path, "train", image_size=32)[0]
    check_format(half, 32, 3)
    assert torch.allclose(half["intrinsics"][:2], a["intrinsics"][:2] / 2)
    pts = camera_points(half)
    for k in range(3):  # geometry consistent after the resize, to half a source pixel (nearest sampling)
        m = half["instance_mask"] == k + 1
        if half["inst_valid"][k] and m.any():
            rebuilt = half["inst_rot"][k] @ ((half["nocs"][:, m] - 0.5) * half["inst_size"][k].norm()) \
                + half["inst_trans"][k][:, None]
            assert (rebuilt - pts[:, m]).abs().max() < 0.8 * 0.5 / 64 + 1e-3


def test_nocs_missing_folder_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(FastposeError, match="does not exist"):
        NOCSDataset(tmp_path, "val")
    (tmp_path / "val").mkdir()
    with pytest.raises(FastposeError, match="no '<scene>/<id>_color.png'"):
        NOCSDataset(tmp_path, "val")


def test_nocs_keeps_every_object_canonicalises_symmetric_poses_and_reads_the_handle_rule(tmp_path: Path) -> None:
    import json
    import math

    source = SyntheticPoseDataset(12, image_size=64, seed=3, max_objects=5)
    stems = export_nocs_layout(source, tmp_path, "val", write_pose=True)
    loaded = NOCSDataset(tmp_path, "val", image_size=64, max_objects=3)  # asks for 3 slots: the data has 5
    M = loaded.max_objects
    assert M == max(int(source[i]["inst_valid"].sum()) for i in range(12)) > 3
    turned = 0
    a57 = math.radians(57)
    ry = np.array([[math.cos(a57), 0, math.sin(a57)], [0, 1, 0], [-math.sin(a57), 0, math.cos(a57)]])
    for i, stem in enumerate(stems):  # turn every symmetric object's pose by 57 degrees about its y axis
        path = Path(f"{stem}_pose.json")
        poses = json.loads(path.read_text())
        for k, pose in poses.items():
            if int(source[i]["inst_class"][int(k) - 1]) in SYMMETRIC_CLASSES:
                pose["rotation"] = (np.array(pose["rotation"]) @ ry).tolist()
                turned += 1
            pose["handle_visible"] = int(k) % 2 == 1
        path.write_text(json.dumps(poses))
    assert turned >= 3
    for i in range(12):
        a, b = source[i], loaded[i]
        check_format(b, 64, M)
        n = a["inst_valid"].shape[0]
        assert torch.equal(a["instance_mask"], b["instance_mask"])  # no object dropped or made background
        assert torch.equal(b["inst_valid"][n:], torch.zeros(M - n, dtype=torch.bool))
        v = a["inst_valid"]
        assert torch.allclose(b["inst_rot"][:n][v], a["inst_rot"][v], atol=1e-5)  # the 57 degrees are gone
        assert b["inst_handle_visible"][:n][v].tolist() == [k % 2 == 0 for k in range(n) if v[k]]
