"""The NOCS dataset layout (Wang et al. 2019, CAMERA / REAL), read into the batch format of ``ARCHITECTURE.md``.

Layout, per image ``<root>/<split>/<scene>/<id>_*`` (``docs/native-size.md`` shows the whole tree):

==================  =====================================================================================
``_color.png``      RGB image
``_mask.png``       instance id per pixel (first channel if several), 255 = background
``_coord.png``      NOCS map, 8-bit RGB; blue stores ``1 - z`` as in the NOCS authors' loader
``_depth.png``      depth in millimetres: 16-bit single channel (REAL), or 8-bit RGB with
                    ``depth = G * 256 + B`` (CAMERA's composed depth)
``_meta.txt``       one line per instance: ``inst_id class_id model_name``; class 0 (distractor) is skipped
``_pose.json``      optional ground truth ``{inst_id: {"rotation": 3x3, "translation": [3], "size": [3]}}``
``_intrinsics.txt`` optional 3x3 camera matrix; otherwise NOCS's CAMERA (or REAL, for splits named real*)
==================  =====================================================================================

plus, for the whole split, NOCS's own ground truth ``<root>/gts/<split>/results_<split>_<scene>_<id>.pkl``
(``fastpose.pose.data.nocs_gts``; read with a restricted unpickler).

Intrinsics in these files (and NOCS's published CAMERA and REAL matrices, ``cx = 319.5`` for 640 columns) put
pixel centres on integer coordinates (OpenCV). fastpose puts the centre of pixel ``(u, v)`` at
``(u + 0.5, v + 0.5)`` (``fastpose.pose.translation.pixel_rays``, shared with the renderer), so the loader adds
0.5 to ``cx, cy`` and ``export_nocs_layout`` subtracts it.

Every object with pixels is kept: ``max_objects`` is raised to the largest number of objects listed in any
image's ``_meta.txt`` (read once, at construction), so no object is dropped or left as background. Bottle, bowl
and can poses are canonicalised as in the synthetic set (the object's x axis is ``normalise(y x z_camera)``;
the NOCS map is turned with it), so a label is a function of the image; ``inst_box_rot`` keeps the rotation
as given, for the 3D IoU (NOCS's evaluation turns the predicted box about y against the annotated box, so the
annotated yaw matters when a box's x and z extents differ). ``inst_handle_visible`` is the mug rule of the
NOCS evaluation: from the ground-truth file or ``_pose.json`` (``"handle_visible"``) when given, else True.

Where the poses come from, per image: NOCS's ground-truth file when it exists (the numbers the field reports
are scored against these), else ``_pose.json``, else derived as the NOCS authors do: the similarity
transform (Umeyama 1991) that maps the instance's NOCS coordinates (minus 0.5) onto its back-projected depth
points gives rotation, translation and scale (the bounding-box diagonal); the size is twice the largest
visible |NOCS - 0.5| per axis times the scale. Poses are in the camera frame at the native resolution; the
image is then kept as it is (``image_size=None``, the default) or brought to ``image_size`` by ``fit``
(resize, crop or letterbox: ``fastpose.pose.camera.fit_frame``), the intrinsics following it.

``export_nocs_layout`` writes samples of any dataset (e.g. the synthetic one) in this layout: the test
fixture for the loader, and a way to hand synthetic data to NOCS tooling.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from fastpose.errors import FastposeError
from fastpose.pose.camera import FIT_MODES, fastpose_to_opencv, fit_frame, image_hw, opencv_to_fastpose
from fastpose.pose.data.nocs_gts import ground_truth_path, mask_bboxes, read_ground_truth, write_ground_truth
from fastpose.pose.data.synthetic import SYMMETRIC_CLASSES, _canonical_symmetric, denormalize_image, normalize_image

CAMERA_K = np.array([[577.5, 0, 319.5], [0, 577.5, 239.5], [0, 0, 1]], dtype=np.float64)
REAL_K = np.array([[591.0125, 0, 322.525], [0, 590.16775, 244.11084], [0, 0, 1]], dtype=np.float64)


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ s * R @ src + t`` for (N, 3) point sets (Umeyama 1991).

    Returns ``(s, R, t)`` with ``R`` a proper rotation (det +1).
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    var_s = (xs**2).sum() / len(src)
    s = float(np.trace(np.diag(D) @ S) / var_s) if var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def _quat_from_rotmat(R: np.ndarray) -> np.ndarray:
    """Canonical (w >= 0) scalar-last quaternion (4,) float64 of one rotation matrix (3, 3)."""
    from fastpose.pose.rotations import rotmat_to_quat

    return rotmat_to_quat(torch.from_numpy(np.asarray(R, dtype=np.float64))).numpy()


class NOCSDataset(Dataset):
    """Images of ``<root>/<split>/*/*_color.png`` as batch dicts (see the module docstring).

    ``image_size``: ``None`` (default) keeps every image at its native size (640x480 for CAMERA25 and
    REAL275); an ``int`` (a square) or ``(height, width)`` brings each image there by ``fit``:
    ``resize`` (default: the whole frame, each axis scaled), ``crop`` (the largest centred region of the
    target's aspect, then resized) or ``letterbox`` (the whole frame scaled to fit, centred, padded with
    zeros of the normalised image, i.e. the mean colour; padding is background). See
    ``fastpose.pose.camera.fit_frame``.
    """

    def __init__(self, root: str | Path, split: str = "train", image_size: int | tuple[int, int] | None = None,
                 max_objects: int = 3, min_pixels: int = 1, fit: str = "resize") -> None:
        if fit not in FIT_MODES:
            raise ValueError(f"fit must be one of {', '.join(FIT_MODES)}, not {fit!r}")
        self.root, self.split, self.fit = Path(root), split, fit
        self.image_size, self.max_objects, self.min_pixels = image_size, max_objects, min_pixels
        self.image_hw = None if image_size is None else image_hw(image_size)
        folder = self.root / split
        if not folder.is_dir():
            raise FastposeError(f"NOCS split folder {str(folder)!r} does not exist")
        self.items = sorted(p.with_name(p.name[: -len("_color.png")]) for p in folder.glob("*/*_color.png"))
        if not self.items:
            raise FastposeError(f"no '<scene>/<id>_color.png' images under {str(folder)!r}")
        self.max_objects = max(max_objects, max(self._listed(stem) for stem in self.items))

    @staticmethod
    def _listed(stem: Path) -> int:
        """Objects of the six classes listed in an image's ``_meta.txt`` (0 if it cannot be read)."""
        try:
            lines = Path(str(stem) + "_meta.txt").read_text().split("\n")
        except OSError:
            return 0
        return sum(1 for ln in lines if len(ln.split()) >= 2 and ln.split()[1].isdigit() and 1 <= int(ln.split()[1]) <= 6)

    def __len__(self) -> int:
        return len(self.items)

    def intrinsics_native(self, stem: Path) -> np.ndarray:
        path = stem.with_name(stem.name + "_intrinsics.txt")
        K = np.loadtxt(path, dtype=np.float64).reshape(3, 3) if path.is_file() else \
            REAL_K if self.split.lower().startswith("real") else CAMERA_K
        return opencv_to_fastpose(K)  # OpenCV's pixel centres (integers) -> fastpose's (u + 0.5, v + 0.5)

    def ground_truth_file(self, stem: Path) -> Path:
        """Where NOCS's own ground truth of ``stem`` would be (``<root>/gts/<split>/results_*.pkl``)."""
        return ground_truth_path(self.root, self.split, stem)

    def ground_truth_count(self) -> int:
        """How many of the split's images have NOCS's own ground-truth file (the rest use ``_pose.json`` or
        derived poses): what an evaluation should say it was scored against."""
        return sum(self.ground_truth_file(stem).is_file() for stem in self.items)

    def _given_poses(self, name: str, stem: Path, present: list[tuple[int, int]]) -> dict[int, dict]:
        """Poses given by a file, per instance id: NOCS's ground-truth pickle (rows in the order of
        ``present``, the (id, class) pairs of the mask's objects, ids sorted), else ``_pose.json``, else none."""
        gts = self.ground_truth_file(stem)
        if gts.is_file():
            gt = read_ground_truth(gts)
            if gt.class_ids.tolist() != [c for _, c in present]:
                raise FastposeError(
                    f"NOCS ground-truth file {str(gts)!r} lists classes {gt.class_ids.tolist()}, but {name!r} shows "
                    f"objects {[i for i, _ in present]} of classes {[c for _, c in present]} (mask ids in order)")
            return {i: {"rotation": gt.rotations[j], "translation": gt.translations[j], "size": gt.sizes[j],
                        "handle_visible": bool(gt.handle_visible[j])} for j, (i, _) in enumerate(present)}
        pose_path = Path(name + "_pose.json")
        if pose_path.is_file():
            return {int(k): v for k, v in json.loads(pose_path.read_text()).items()}
        return {}

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        stem = self.items[index]
        name = str(stem)
        try:
            color = np.asarray(Image.open(name + "_color.png").convert("RGB"), dtype=np.float32) / 255
            mask = np.asarray(Image.open(name + "_mask.png"))
            coord = np.asarray(Image.open(name + "_coord.png").convert("RGB"), dtype=np.float32) / 255
            depth = np.asarray(Image.open(name + "_depth.png"))
            meta = Path(name + "_meta.txt").read_text().split("\n")
        except OSError as exc:
            raise FastposeError(f"cannot read NOCS sample {name!r}: {exc}") from None
        if mask.ndim == 3:
            mask = mask[..., 0]
        if depth.ndim == 3:  # CAMERA's composed 8-bit depth
            depth = depth[..., 1].astype(np.float64) * 256 + depth[..., 2]
        depth = depth.astype(np.float64) / 1000.0  # metres
        coord = coord.copy()
        coord[..., 2] = 1 - coord[..., 2]
        K = self.intrinsics_native(stem)
        H, W = mask.shape

        listed = []
        for line in meta:
            parts = line.split()
            if len(parts) < 2:
                continue
            inst_id, cls = int(parts[0]), int(parts[1])
            if 1 <= cls <= 6:
                listed.append((inst_id, cls, mask == inst_id))
        present = sorted((i, c) for i, c, pix in listed if pix.any())
        poses = self._given_poses(name, stem, present)
        instances = [(i, c, pix) for i, c, pix in listed if pix.sum() >= self.min_pixels]
        if len(instances) > self.max_objects:  # only if a _meta.txt changed since construction
            raise FastposeError(f"{name}: {len(instances)} objects, more than the {self.max_objects} slots")

        from fastpose.pose.translation import pixel_rays

        rays = pixel_rays(torch.from_numpy(K), H, W).numpy().reshape(H, W, 3)
        M = self.max_objects
        out_inst = np.zeros((H, W), np.int64)
        out_cls = np.zeros((H, W), np.int64)
        inst_valid = np.zeros(M, bool)
        inst_class = np.zeros(M, np.int64)
        inst_quat, inst_rot, box_rot = np.zeros((M, 4)), np.zeros((M, 3, 3)), np.zeros((M, 3, 3))
        inst_trans, inst_size = np.zeros((M, 3)), np.zeros((M, 3))
        handle = np.ones(M, bool)
        for k, (inst_id, cls, pix) in enumerate(instances):
            if inst_id in poses:
                R = np.asarray(poses[inst_id]["rotation"], float)
                t = np.asarray(poses[inst_id]["translation"], float)
                size = np.asarray(poses[inst_id]["size"], float)
            else:
                good = pix & (depth > 0)
                if good.sum() < 3:
                    continue
                src = coord[good].astype(np.float64) - 0.5
                dst = rays[good] * depth[good][:, None]
                s, R, t = umeyama(src, dst)
                size = 2 * np.abs(src).max(0) * s
            box_rot[k] = R  # the box as given: the 3D IoU uses it, as the NOCS evaluation does
            if cls in SYMMETRIC_CLASSES:  # canonical yaw; the NOCS map turns with the object frame
                R_canon = _canonical_symmetric(R)
                turn = R.T @ R_canon  # a rotation about y: object coordinates p_canon = turn^T p
                coord[pix] = (coord[pix] - 0.5) @ turn + 0.5
                R = R_canon
            handle[k] = bool(poses.get(inst_id, {}).get("handle_visible", True))
            out_inst[pix], out_cls[pix] = k + 1, cls
            inst_valid[k], inst_class[k] = True, cls
            inst_rot[k], inst_trans[k], inst_size[k] = R, t, size
            inst_quat[k] = _quat_from_rotmat(R)

        # The network's frame: native, or brought to image_size by self.fit; the intrinsics follow.
        frame = fit_frame((H, W), self.image_hw, self.fit)
        K_out = frame.intrinsics(K)

        def planes(a: np.ndarray) -> Tensor:  # (H, W) or (H, W, C) numpy -> (H, W) or (C, H, W) tensor
            t_ = torch.from_numpy(np.ascontiguousarray(a))
            return t_.permute(2, 0, 1) if t_.dim() == 3 else t_

        inst_t = frame.resample(planes(out_inst), "nearest-exact")
        fg = inst_t > 0
        inst_valid_t = torch.from_numpy(inst_valid)
        present_t = torch.bincount(inst_t.reshape(-1), minlength=M + 1)[1:] > 0
        inst_valid_t &= present_t  # an instance that vanished in the resize is padded
        qt = torch.from_numpy(inst_quat).float() * inst_valid_t[:, None]
        qmap = torch.where(fg, qt[(inst_t - 1).clamp_min(0)].permute(2, 0, 1), torch.zeros(()))
        nocs = frame.resample(planes(coord).float(), "nearest-exact") * fg
        image = normalize_image(frame.resample(planes(color).float(), "bilinear").clamp(0, 1))
        if frame.inner != frame.dst:
            image = image * frame.valid()  # letterbox padding: 0 after normalisation (the mean colour)
        keep = lambda a: torch.from_numpy(a).float() * inst_valid_t.view((-1,) + (1,) * (a.ndim - 1))  # noqa
        return {
            "image": image,
            "class_mask": frame.resample(planes(out_cls), "nearest-exact") * fg,
            "instance_mask": inst_t,
            "quaternion_map": qmap,
            "nocs": nocs,
            "depth": frame.resample(planes(depth.astype(np.float32)), "nearest-exact") * fg,
            "intrinsics": torch.from_numpy(K_out).float(),
            "inst_valid": inst_valid_t,
            "inst_class": torch.from_numpy(inst_class) * inst_valid_t,
            "inst_quat": keep(inst_quat),
            "inst_rot": keep(inst_rot),
            "inst_box_rot": keep(box_rot),
            "inst_trans": keep(inst_trans),
            "inst_size": keep(inst_size),
            "inst_handle_visible": torch.from_numpy(handle),
        }


def export_nocs_layout(dataset: Dataset, root: str | Path, split: str = "train", n: int | None = None,
                       per_scene: int = 4, write_pose: bool = False, write_gts: bool = False) -> list[Path]:
    """Write ``n`` samples of ``dataset`` as ``<root>/<split>/scene_<k>/<id>_*`` files (NOCS layout).

    Depth is stored in millimetres (16-bit), NOCS coordinates in 8 bits, so derived poses carry that
    quantisation. ``write_pose`` also writes the exact poses (``_pose.json``); ``write_gts`` writes them as
    NOCS's own ground-truth files (``<root>/gts/<split>/results_<split>_scene_<k>_<id>.pkl``, the authors'
    keys and shapes: ``fastpose.pose.data.nocs_gts``). Returns the file stems.
    """
    root = Path(root)
    n = len(dataset) if n is None else min(n, len(dataset))
    stems = []
    for i in range(n):
        s = dataset[i]
        folder = root / split / f"scene_{i // per_scene + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"{i % per_scene:04d}"
        rgb = (denormalize_image(s["image"]).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(rgb).save(f"{stem}_color.png")
        inst = s["instance_mask"].numpy()
        Image.fromarray(np.where(inst > 0, inst, 255).astype(np.uint8)).save(f"{stem}_mask.png")
        nocs = s["nocs"].permute(1, 2, 0).numpy().copy()
        nocs[..., 2] = np.where(inst > 0, 1 - nocs[..., 2], 0)
        Image.fromarray((nocs * 255).round().clip(0, 255).astype(np.uint8)).save(f"{stem}_coord.png")
        depth_mm = (s["depth"].numpy() * 1000).round().clip(0, 65535).astype(np.uint16)
        Image.fromarray(depth_mm).save(f"{stem}_depth.png")
        lines, poses = [], {}
        for k in range(len(s["inst_valid"])):
            if bool(s["inst_valid"][k]):
                cls = int(s["inst_class"][k])
                lines.append(f"{k + 1} {cls} synthetic_{cls}")
                poses[str(k + 1)] = {"rotation": s["inst_rot"][k].tolist(), "translation": s["inst_trans"][k].tolist(),
                                     "size": s["inst_size"][k].tolist(),
                                     "handle_visible": bool(s.get("inst_handle_visible", torch.ones(len(s["inst_valid"])))[k])}
        Path(f"{stem}_meta.txt").write_text("\n".join(lines) + "\n")
        # the files hold OpenCV's convention, as NOCS's matrices (see the module docstring)
        np.savetxt(f"{stem}_intrinsics.txt", fastpose_to_opencv(s["intrinsics"].double().numpy()))
        if write_pose:
            Path(f"{stem}_pose.json").write_text(json.dumps(poses))
        if write_gts:
            v = s["inst_valid"].bool()
            ids = [k + 1 for k in range(len(v)) if bool(v[k])]
            handle = s.get("inst_handle_visible", torch.ones(len(v), dtype=torch.bool))
            write_ground_truth(ground_truth_path(root, split, stem), s["inst_class"][v].numpy(),
                               s["inst_rot"][v].double().numpy(), s["inst_trans"][v].double().numpy(),
                               s["inst_size"][v].double().numpy(), handle[v].numpy(), mask_bboxes(inst, ids),
                               image_path=str(stem.relative_to(root)), image_id=i)
        stems.append(stem)
    return stems
