"""``fastpose render``: rendered test images with their ground truth, without Python: what a synthetic run
was trained on, to try ``fastpose predict`` on and check its answers against.

``render_images(out, n, seed, image_size, rotations, max_objects)`` draws ``n`` scenes of the synthetic set
(``fastpose.pose.data.synthetic.SyntheticPoseDataset``, seed ``seed``: scene ``i`` is the same for every ``n``,
and it is sample ``i`` of a run trained with ``--data-seed seed``) at ``image_size`` (``WIDTHxHEIGHT`` or one
number for a square; default ``DEFAULT_SIZE``, the field's 640x480), and writes for each, in ``out``:

| file | holds |
| --- | --- |
| ``render-s<seed>-<i>.png`` | the RGB image; its PNG text ``fastpose-render`` (``predict.RENDER_TAG``) says it is a render |
| ``render-s<seed>-<i>.json`` | its labels: size, camera (``K`` in fastpose's pixel-centre convention and ``intrinsics`` as ``predict --intrinsics`` takes them, OpenCV's), and per object class, quaternion (x, y, z, w), rotation matrix, translation and size (m), visible pixels and their box ``[x0, y0, x1, y1)`` |

Existing files of those names are refused unless ``force``; every value is checked before anything is
rendered or written. Files are written through a temporary name and renamed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastpose.errors import FastposeError

DEFAULT_SIZE = "640x480"
MAX_IMAGES = 1000
MAX_SIDE = 4096


def render_images(out: str, n: int = 4, seed: int = 0, image_size: str = DEFAULT_SIZE, rotations: str = "tabletop",
                  max_objects: int = 3, force: bool = False) -> list[Path]:
    """Render and write the images and labels (see the module docstring); returns the image paths."""
    from fastpose.config import check_int
    from fastpose.sizes import parse_image_size

    check_int("--n", n, 1, MAX_IMAGES)
    check_int("--seed", seed, 0, 2**32 - 1)
    check_int("--max-objects", max_objects, 1, 16)
    if rotations not in ("so3", "tabletop"):
        raise FastposeError(f"--rotations must be so3 or tabletop, got {rotations!r}")
    try:
        hw = parse_image_size(image_size)
    except ValueError as exc:
        raise FastposeError(f"--image-size: {exc}") from None
    if min(hw) < 8 or max(hw) > MAX_SIDE:
        raise FastposeError(f"--image-size: each side from 8 to {MAX_SIDE} pixels, got {hw[1]}x{hw[0]}")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise FastposeError(f"--out {str(folder)!r} is not a directory")
    names = [f"render-s{seed}-{i}" for i in range(n)]
    if not force:
        taken = [folder / f"{name}{ext}" for name in names for ext in (".png", ".json") if (folder / f"{name}{ext}").exists()]
        if taken:
            raise FastposeError(f"{str(taken[0])!r} exists ({len(taken)} of the files to write do); "
                                "pass --force to replace them, or another --out or --seed")

    from PIL import Image, PngImagePlugin

    from fastpose.pose.camera import fastpose_to_opencv
    from fastpose.pose.data.synthetic import CLASSES, SyntheticPoseDataset, denormalize_image
    from fastpose.training.predict import RENDER_TAG, write_png

    ds = SyntheticPoseDataset(n, image_size=hw, seed=seed, rotations=rotations, max_objects=max_objects)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, n, 8):  # a few scenes a pass: a 640x480 batch's buffers stay small
        batch = ds.render_batch(range(start, min(n, start + 8)))
        for b in range(batch["image"].shape[0]):
            i = start + b
            rgb = (denormalize_image(batch["image"][b]) * 255).round().byte().permute(1, 2, 0).numpy()
            info = PngImagePlugin.PngInfo()
            info.add_text(RENDER_TAG, json.dumps({"seed": seed, "index": i, "rotations": rotations}))
            path = folder / f"{names[i]}.png"
            write_png(Image.fromarray(rgb), path, pnginfo=info)
            labels = _labels(batch, b, path.name, seed, i, rotations, CLASSES, fastpose_to_opencv)
            _write_text(folder / f"{names[i]}.json", json.dumps(labels, indent=2) + "\n")
            paths.append(path)
    return paths


def _labels(batch: dict[str, Any], b: int, image: str, seed: int, index: int, rotations: str, classes: tuple,
            to_opencv: Any) -> dict[str, Any]:
    K = batch["intrinsics"][b].double().numpy()
    fx, fy, cx, cy = (float(v) for v in (K[0, 0], K[1, 1], *to_opencv(K)[:2, 2]))
    H, W = batch["class_mask"].shape[-2:]
    objects = []
    for k in range(batch["inst_valid"].shape[1]):
        if not bool(batch["inst_valid"][b, k]):
            continue
        mask = batch["instance_mask"][b] == k + 1
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        objects.append({
            "class": classes[int(batch["inst_class"][b, k]) - 1], "class_id": int(batch["inst_class"][b, k]),
            "quaternion": [round(float(v), 6) for v in batch["inst_quat"][b, k]],
            "rotation": [[round(float(v), 6) for v in row] for row in batch["inst_rot"][b, k]],
            "translation": [round(float(v), 6) for v in batch["inst_trans"][b, k]],
            "size": [round(float(v), 6) for v in batch["inst_size"][b, k]],
            "handle_visible": bool(batch["inst_handle_visible"][b, k]),
            "pixels": int(mask.sum()),
            "box": [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1],
        })
    return {"image": image, "width": int(W), "height": int(H), "seed": seed, "index": index, "rotations": rotations,
            "K": [[float(v) for v in row] for row in K],
            "intrinsics": f"{fx:g},{fy:g},{cx:g},{cy:g}",  # as predict --intrinsics takes them (OpenCV's)
            "objects": objects}


def _write_text(path: Path, text: str) -> None:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
