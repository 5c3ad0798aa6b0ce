"""``fastpose predict``: poses (class, score, rotation, translation, size) for images of any size, with overlays.

Each image is prepared as in training on NOCS data: centre-cropped to a square, resized to the run's
``image_size`` (bilinear, antialiased), ImageNet-normalised; the intrinsics follow the crop and the resize, so
translations and sizes come out in metres in the original camera's frame.

Intrinsics: ``--intrinsics fx,fy,cx,cy`` in the original image's pixels, in the convention calibration tools
(OpenCV) print: pixel centres on integer coordinates. They are converted to fastpose's convention (pixel
``(u, v)`` centred at ``(u + 0.5, v + 0.5)``, ``fastpose.pose.translation``) by adding 0.5 to ``cx, cy``.
Without them the camera of the synthetic set is assumed: focal length = the image's longer side, principal
point at the image centre (about 53 degrees of field of view).

Overlays (``<out>/<image stem>-poses.png``): each detected object's 3D box (12 edges) and its axes (x red, y
green, z blue, half the box's extent long), labelled with class and score; drawn at 4x and downsampled
(Lanczos), which antialiases every line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastpose.errors import FastposeError

SUPERSAMPLE = 4
_EDGES = [(0, 1), (0, 2), (1, 3), (2, 3), (4, 5), (4, 6), (5, 7), (6, 7), (0, 4), (1, 5), (2, 6), (3, 7)]
_CLASS_COLOURS = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0)]


def parse_intrinsics(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(v == v and abs(v) != float("inf") for v in values) or values[0] <= 0 or values[1] <= 0:
        raise FastposeError(f"--intrinsics must be fx,fy,cx,cy (four numbers, fx and fy > 0), got {text!r}")
    return values  # type: ignore[return-value]


def prepare(image: Any, image_size: int, intrinsics: tuple[float, float, float, float] | None) -> tuple[Any, Any, Any]:
    """``(network input (3, S, S), intrinsics for it (3, 3), intrinsics of the original image (3, 3))``,
    both matrices in fastpose's pixel-centre convention."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from fastpose.pose.data.synthetic import normalize_image

    W, H = image.size
    if intrinsics is None:
        f = float(max(W, H))
        K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], dtype=np.float64)
    else:
        fx, fy, cx, cy = intrinsics
        K = np.array([[fx, 0, cx + 0.5], [0, fy, cy + 0.5], [0, 0, 1]], dtype=np.float64)
    side = min(W, H)
    x0, y0 = (W - side) // 2, (H - side) // 2
    scale = image_size / side
    K_net = K.copy()
    K_net[0, 2], K_net[1, 2] = (K[0, 2] - x0) * scale, (K[1, 2] - y0) * scale
    K_net[0, 0], K_net[1, 1] = K[0, 0] * scale, K[1, 1] * scale
    rgb = torch.from_numpy(np.asarray(image, dtype=np.float32)[y0:y0 + side, x0:x0 + side] / 255).permute(2, 0, 1)
    if side != image_size:
        rgb = F.interpolate(rgb[None], size=(image_size, image_size), mode="bilinear", antialias=True,
                            align_corners=False)[0]
    return normalize_image(rgb.clamp(0, 1)), torch.from_numpy(K_net).float(), torch.from_numpy(K).float()


def draw_overlay(image: Any, objects: list[dict[str, Any]], K: Any, path: Path) -> None:
    """The image with each object's box, axes and label (see the module docstring), as a PNG."""
    import numpy as np
    from PIL import Image, ImageDraw

    from fastpose.pose.data.synthetic import CLASSES

    W, H = image.size
    s = SUPERSAMPLE
    big = image.convert("RGB").resize((W * s, H * s), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(big)
    K = np.asarray(K, dtype=np.float64)
    width = max(s, round(s * max(W, H) / 256))  # at least one output pixel

    def to_px(points: np.ndarray) -> list[tuple[float, float]]:
        p = points @ K.T
        uv = p[:, :2] / p[:, 2:3]
        return [((u - 0.5) * s + s / 2 - 0.5, (v - 0.5) * s + s / 2 - 0.5) for u, v in uv]  # continuous -> PIL

    for obj in objects:
        from scipy.spatial.transform import Rotation

        R = Rotation.from_quat(obj["quaternion"]).as_matrix()
        t, size = np.asarray(obj["translation"]), np.asarray(obj["size"])
        if t[2] <= 1e-3:
            continue
        signs = np.array([[x, y, z] for x in (-.5, .5) for y in (-.5, .5) for z in (-.5, .5)])
        corners = (signs * size) @ R.T + t
        if (corners[:, 2] <= 1e-3).any():
            continue
        colour = _CLASS_COLOURS[(CLASSES.index(obj["class"])) % len(_CLASS_COLOURS)]
        px = to_px(corners)
        for a, b in _EDGES:
            draw.line([px[a], px[b]], fill=colour, width=width)
        axes = to_px(np.vstack([t, t + R @ np.diag(size / 2)]))  # centre, then the tips of x, y, z
        for tip, c in zip(axes[1:], ((230, 30, 30), (30, 200, 30), (40, 80, 240))):
            draw.line([axes[0], tip], fill=c, width=width)
        x, y = min(p[0] for p in px), min(p[1] for p in px)
        draw.text((x, max(0, y - 12 * s)), f"{obj['class']} {obj['score']:.2f}", fill=colour, font_size=10 * s)
    path.parent.mkdir(parents=True, exist_ok=True)
    big.resize((W, H), Image.Resampling.LANCZOS).save(path)


def predict_images(ref: str, images: list[str], intrinsics: str | None = None, out: str | None = None,
                   checkpoint: str = "best", json_out: bool = False) -> list[dict[str, Any]]:
    """The ``fastpose predict`` command (see the module docstring); returns the per-image results."""
    K_user = parse_intrinsics(intrinsics)
    paths = [Path(p) for p in images]
    for p in paths:
        if not p.is_file():
            raise FastposeError(f"no such image file: {str(p)!r}")
    from PIL import Image, UnidentifiedImageError

    opened = []
    for p in paths:
        try:
            with Image.open(p) as im:
                opened.append(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise FastposeError(f"cannot read image {str(p)!r}: {exc}") from None
    out_dir = Path(out) if out else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise FastposeError(f"--out {str(out_dir)!r} is not a directory")

    import torch

    from fastpose.evaluate import find_checkpoint, load_checkpoint
    from fastpose.journal.reader import read_run
    from fastpose.pose.data.synthetic import CLASSES
    from fastpose.pose.evaluation import detect

    from fastpose.journal.db import journal_url

    run = read_run(ref, FastposeError(f"the journal is empty ({journal_url()}): no runs yet"))
    model, config, has_3d = load_checkpoint(find_checkpoint(run, checkpoint))
    if not has_3d:
        raise FastposeError(f"run {run.id} ({run.label}) predates the translation and size heads; retrain it")
    out_dir = out_dir or Path(run.run_dir or ".") / "predictions"
    results = []
    for path, image in zip(paths, opened):
        x, K_net, K = prepare(image, config.data.image_size, K_user)
        with torch.inference_mode():
            det = detect(model(x[None]), K_net[None])
        order = torch.argsort(det["score"], descending=True).tolist()
        objects = [{"class": CLASSES[int(det["class_id"][k]) - 1], "score": round(float(det["score"][k]), 4),
                    "quaternion": [round(float(v), 6) for v in det["quat"][k]],
                    "translation": [round(float(v), 5) for v in det["trans"][k]],
                    "size": [round(float(v), 5) for v in det["size"][k]]} for k in order]
        overlay = out_dir / f"{path.stem}-poses.png"
        draw_overlay(image, objects, K.numpy(), overlay)
        results.append({"image": str(path), "width": image.size[0], "height": image.size[1],
                        "intrinsics": K.tolist(), "overlay": str(overlay), "objects": objects})
    from fastpose.text import strict_json, visible

    if json_out:
        print(strict_json({"run": {"id": run.id, "label": run.label}, "images": results}, indent=2))
    else:
        for r in results:
            print(f"{visible(r['image'])}: {len(r['objects'])} object(s); overlay {visible(r['overlay'])}")
            for o in r["objects"]:
                t = ", ".join(f"{v:.3f}" for v in o["translation"])
                print(f"  {o['class']:<7} {o['score']:.2f}  t = ({t}) m")
    return results
