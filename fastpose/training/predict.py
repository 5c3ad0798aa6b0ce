"""``fastpose predict``: poses (class, score, rotation, translation, size) for images of any size, with overlays.

Each image is brought whole to the run's input size (``fastpose.pose.camera.image_hw(config.data.image_size)``,
``(H, W)``) as the NOCS loader's ``letterbox`` does: scaled by one factor to fit, centred, the rest padded with
the mean colour (``fastpose.pose.camera.fit_frame``), so nothing at the image's sides is lost; the intrinsics
follow the scaling and the padding, so translations and sizes come out in metres in the original image's
camera, and the overlay is drawn with the original camera on the original image.

Intrinsics: ``--intrinsics fx,fy,cx,cy`` in the original image's pixels, in the convention calibration tools
(OpenCV) print: pixel centres on integer coordinates. They are converted to fastpose's convention (pixel
``(u, v)`` centred at ``(u + 0.5, v + 0.5)``, ``fastpose.pose.translation``) by adding 0.5 to ``cx, cy``.
Without them the synthetic set's camera is assumed (``fastpose.pose.camera.synthetic_intrinsics``: focal length
= the image's shorter side, principal point at the centre) and a warning names it; the JSON says
``"intrinsics": "assumed"`` (else ``"given"``), with the matrix as ``"K"``. Metres are only as right as the
camera.

What is reported: detections scoring at least ``--min-score`` (default ``DEFAULT_MIN_SCORE``; the output says
the threshold and how many fell below it). A run trained on synthetic data only, shown an image that is not a
``fastpose render`` image (its PNG carries ``RENDER_TAG``), gets a one-line warning: the network has seen
nothing but rendered primitives, and its detections on a photograph mean little.

Intrinsics must describe a camera the float32 pipeline can work with, checked against each image: focal
lengths between 1/1000 and 1000 times the image's longer side (a field of view between about 0.06 and 179.9
degrees), the principal point at most 10 image widths (heights) outside the image.

Images (``fastpose.files.open_user_file``: regular files only) are refused above ``--max-pixels`` (default
``MAX_PIXELS``, 100 megapixels), read from the file's header before anything is decoded, and above
``IMAGE_BYTES_PER_PIXEL`` bytes a pixel allowed (plus ``IMAGE_EXTRA_BYTES``). An image much larger than the
network's input is first shrunk by an integer factor with a box filter (Pillow's ``reduce``, to no less than
``REDUCE_TO`` pixels a side), so the float copy of a large photo stays small; the antialiased resize follows.

Overlays: each detected object's 3D box (12 edges) and its axes (x red, y green, z blue, half the box's
extent long), labelled with class and score on a dark box; at the input image's resolution, but at least
``OVERLAY_MIN_SIDE`` pixels on its longer side (a small image is enlarged, pixels kept sharp) and at most
``OVERLAY_MAX_PIXELS`` (a huge one is scaled down); drawn at up to 4x (``SUPERSAMPLE``) within
``DRAW_MAX_PIXELS`` and downsampled (Lanczos), which antialiases every line. Each overlay is
``<out>/<image stem>-poses.png``; when two images of one command share a stem (``a/x.png b/x.png``, ``x.png
x.jpg``) the later ones get ``-poses-2.png``, ``-poses-3.png``, ..., so no overlay the command wrote is
overwritten; each image's line (and ``--json``) names its overlay. Files are written through a temporary
name and renamed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fastpose.errors import FastposeError

SUPERSAMPLE = 4
DEFAULT_MIN_SCORE = 0.5  # --min-score's default: a detection's mean class probability over its pixels
OVERLAY_MIN_SIDE = 512  # an overlay's longer side at least (a 64-px image is drawn 8x larger)
RENDER_TAG = "fastpose-render"  # PNG text key fastpose render writes: the image is a rendered synthetic scene
MAX_PIXELS = 100_000_000  # --max-pixels' default: a 100-megapixel photo reads; larger ones need the flag
MAX_PIXELS_CEILING = 1_000_000_000  # the most --max-pixels may allow (3 GB as 8-bit RGB)
IMAGE_BYTES_PER_PIXEL = 8  # the file size an image may have: 16-bit RGBA, uncompressed, is 8 bytes a pixel
IMAGE_EXTRA_BYTES = 64 << 20  # ... plus room for metadata (ICC profiles, EXIF, thumbnails)
REDUCE_TO = 2048  # a crop over twice this side (and over 8x the network's input) is box-reduced first
OVERLAY_MAX_PIXELS = 1 << 24  # an overlay's pixels at most (4096 x 4096)
LABEL_MIN_PX, LABEL_MAX_PX = 12, 32  # a label's text height in overlay pixels: 1/32 of the shorter side, within these
DRAW_MAX_PIXELS = 1 << 25  # the supersampled drawing canvas's pixels at most (a 1920 x 1080 image at 4x)
FOCAL_RANGE = (1e-3, 1e3)  # fx, fy as a multiple of the image's longer side
CENTRE_MARGIN = 10  # cx, cy at most this many image widths (heights) outside the image
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


def check_intrinsics(values: tuple[float, float, float, float], width: int, height: int, image: str) -> None:
    """Refuse intrinsics that describe no usable camera for a ``width`` x ``height`` image (see the module
    docstring): beyond these the float32 network intrinsics overflow, underflow to a singular matrix, or
    turn the principal point into NaN."""
    fx, fy, cx, cy = values
    longer = max(width, height)
    low, high = FOCAL_RANGE[0] * longer, FOCAL_RANGE[1] * longer
    m = CENTRE_MARGIN
    if not (low <= fx <= high and low <= fy <= high):
        raise FastposeError(f"--intrinsics: fx and fy must be between {low:g} and {high:g} pixels for {image!r} "
                            f"({width}x{height}: 1/1000 to 1000 times its longer side), got {fx:g}, {fy:g}")
    if not (-m * width <= cx <= (m + 1) * width and -m * height <= cy <= (m + 1) * height):
        raise FastposeError(f"--intrinsics: the principal point ({cx:g}, {cy:g}) is more than {m} image sizes "
                            f"outside {image!r} ({width}x{height})")


def camera(width: int, height: int, intrinsics: tuple[float, float, float, float] | None) -> Any:
    """The original image's camera (3, 3) float64 in fastpose's pixel-centre convention: ``--intrinsics``
    (OpenCV's convention, + 0.5 on ``cx, cy``), else the synthetic camera of a ``width`` x ``height`` image."""
    import numpy as np

    if intrinsics is None:
        from fastpose.pose.camera import synthetic_intrinsics

        return synthetic_intrinsics((height, width)).double().numpy()
    fx, fy, cx, cy = intrinsics
    return np.array([[fx, 0, cx + 0.5], [0, fy, cy + 0.5], [0, 0, 1]], dtype=np.float64)


def prepare(image: Any, run_hw: tuple[int, int], K: Any) -> tuple[Any, Any, Any]:
    """``(network input (3, H, W), its intrinsics (3, 3) float32, the FrameMap from the original image)``: the
    whole image letterboxed to the run's ``run_hw`` = (H, W), ImageNet-normalised (the padding is the mean
    colour, 0 after normalising); ``K`` is the original image's camera (fastpose's convention)."""
    import numpy as np
    import torch

    from fastpose.pose.camera import fit_frame
    from fastpose.pose.data.synthetic import normalize_image

    W, H = image.size
    factor = max(W, H) // max(REDUCE_TO, 8 * max(run_hw))
    K = np.asarray(K, dtype=np.float64)
    if factor >= 2:  # a large photo: shrink by a whole factor (box filter) before the float copy
        # the last W % factor columns (H % factor rows) go, so that reduced pixel u covers exactly
        # [u f, (u + 1) f) of the original: every coordinate is divided by f, and so is the camera
        image = image.crop((0, 0, W - W % factor, H - H % factor)).reduce(factor)
        K = np.diag([1 / factor, 1 / factor, 1.0]) @ K
    rgb = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    frame = fit_frame(tuple(rgb.shape[1:]), run_hw, "letterbox")
    x = frame.resample(normalize_image(rgb.clamp(0, 1)), "bilinear", fill=0.0)
    return x, torch.from_numpy(frame.intrinsics(K)).float(), frame


def overlay_size(width: int, height: int) -> tuple[int, int, int]:
    """``(overlay width, overlay height, supersampling factor)`` for a ``width`` x ``height`` image: the image's
    size; a whole multiple of it when its longer side is under ``OVERLAY_MIN_SIDE`` (the smallest that reaches
    it), scaled down to at most ``OVERLAY_MAX_PIXELS``; drawn at up to ``SUPERSAMPLE`` times that, within
    ``DRAW_MAX_PIXELS``."""
    r = min(float(max(1, math.ceil(OVERLAY_MIN_SIDE / max(width, height)))),
            (OVERLAY_MAX_PIXELS / (width * height)) ** 0.5)
    w, h = max(1, round(width * r)), max(1, round(height * r))
    s = max(1, min(SUPERSAMPLE, int((DRAW_MAX_PIXELS / (w * h)) ** 0.5)))
    return w, h, s


def _clip(a: tuple[float, float], b: tuple[float, float], box: tuple[float, float, float, float]
          ) -> list[tuple[float, float]] | None:
    """The part of segment ``a``-``b`` inside ``box`` (x0, y0, x1, y1) (Liang-Barsky), or None: far-away
    or non-finite end points never reach Pillow, which stores coordinates as C integers."""
    (ax, ay), (bx, by) = a, b
    if not all(math.isfinite(v) for v in (ax, ay, bx, by)):
        return None
    t0, t1 = 0.0, 1.0
    dx, dy = bx - ax, by - ay
    for p, q in ((-dx, ax - box[0]), (dx, box[2] - ax), (-dy, ay - box[1]), (dy, box[3] - ay)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return [(ax + t0 * dx, ay + t0 * dy), (ax + t1 * dx, ay + t1 * dy)]


def draw_overlay(image: Any, objects: list[dict[str, Any]], K: Any, path: Path) -> tuple[int, int]:
    """The image with each object's box, axes and label (see the module docstring), as a PNG at ``path``
    (written through a temporary name); returns the overlay's size."""
    import numpy as np
    from PIL import Image, ImageDraw

    from fastpose.pose.data.synthetic import CLASSES

    W, H = image.size
    w, h, s = overlay_size(W, H)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if w > W:  # a small image enlarged: its pixels stay sharp squares (first to the overlay, then the canvas)
        big = rgb.resize((w, h), Image.Resampling.NEAREST).resize((w * s, h * s), Image.Resampling.NEAREST)
    else:
        big = rgb.resize((w * s, h * s), Image.Resampling.BICUBIC, reducing_gap=3.0)
    draw = ImageDraw.Draw(big)
    K = np.asarray(K, dtype=np.float64)
    sx, sy = w * s / W, h * s / H  # canvas pixels per image pixel
    width = max(s, round(s * max(w, h) / 256))  # at least one output pixel
    box = (-2.0 * width, -2.0 * width, w * s + 2.0 * width, h * s + 2.0 * width)

    def to_px(points: np.ndarray) -> list[tuple[float, float]]:
        p = points @ K.T
        with np.errstate(all="ignore"):
            uv = p[:, :2] / p[:, 2:3]
        # continuous image coordinates -> the canvas's, then Pillow's (integers at pixel centres)
        return [(float(u) * sx - 0.5, float(v) * sy - 0.5) for u, v in uv]

    def line(a: tuple[float, float], b: tuple[float, float], colour: tuple[int, int, int]) -> None:
        part = _clip(a, b, box)
        if part is not None:
            draw.line(part, fill=colour, width=width)

    labels = []
    for obj in objects:
        from scipy.spatial.transform import Rotation

        R = Rotation.from_quat(obj["quaternion"]).as_matrix()
        t, size = np.asarray(obj["translation"]), np.asarray(obj["size"])
        if not (np.isfinite(t).all() and np.isfinite(size).all()) or t[2] <= 1e-3:
            continue
        signs = np.array([[x, y, z] for x in (-.5, .5) for y in (-.5, .5) for z in (-.5, .5)])
        corners = (signs * size) @ R.T + t
        if (corners[:, 2] <= 1e-3).any():
            continue
        colour = _CLASS_COLOURS[(CLASSES.index(obj["class"])) % len(_CLASS_COLOURS)]
        px = to_px(corners)
        for a, b in _EDGES:
            line(px[a], px[b], colour)
        axes = to_px(np.vstack([t, t + R @ np.diag(size / 2)]))  # centre, then the tips of x, y, z
        for tip, c in zip(axes[1:], ((230, 30, 30), (30, 200, 30), (40, 80, 240))):
            line(axes[0], tip, c)
        x, y = min(p[0] for p in px), min(p[1] for p in px)
        if math.isfinite(x) and math.isfinite(y):
            labels.append((x, y, f"{obj['class']} {obj['score']:.2f}", colour))
    font = s * min(LABEL_MAX_PX, max(LABEL_MIN_PX, round(min(w, h) / 32)))  # readable at any overlay size
    for x, y, text, colour in labels:  # after every box: a label is never drawn over
        left, top, right, bottom = draw.textbbox((0, 0), text, font_size=font)
        pad = max(1, font // 6)
        x = min(max(x, 0.0), w * s - (right - left) - 2 * pad)
        y = min(max(y - (bottom - top) - 3 * pad, 0.0), h * s - (bottom - top) - 2 * pad)
        draw.rectangle((x, y, x + right - left + 2 * pad, y + bottom - top + 2 * pad), fill=(20, 20, 20))
        draw.text((x + pad - left, y + pad - top), text, fill=colour, font_size=font)
    out = big if s == 1 else big.resize((w, h), Image.Resampling.LANCZOS)
    write_png(out, path)
    return w, h


def write_png(picture: Any, path: Path, **options: Any) -> None:
    """``picture`` (a Pillow image) as a PNG at ``path`` (``options``: Pillow's, e.g. ``pnginfo``), through a
    temporary file beside it and a rename: a reader never sees half a file, and whatever ``path`` was (a FIFO,
    a link) is replaced, not written into."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            picture.save(f, format="PNG", **options)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def overlay_paths(images: list[Path], out_dir: Path) -> list[Path]:
    """``<out_dir>/<stem>-poses.png`` for each image; a name an earlier image of the same command took
    (compared without case, for case-insensitive file systems) gets ``-poses-2``, ``-poses-3``, ..."""
    taken: set[str] = set()
    out = []
    for image in images:
        n, name = 1, f"{image.stem}-poses.png"
        while name.casefold() in taken:
            n += 1
            name = f"{image.stem}-poses-{n}.png"
        taken.add(name.casefold())
        out.append(out_dir / name)
    return out


def read_image(path: Path, max_pixels: int) -> Any:
    """The image at ``path`` as an RGB Pillow image, or a FastposeError naming the file (see the module
    docstring): a regular file, at most ``max_pixels`` pixels by its header, which Pillow can decode."""
    import struct

    from PIL import Image, UnidentifiedImageError

    from fastpose.files import open_user_file

    shown = str(path)
    limit = IMAGE_BYTES_PER_PIXEL * max_pixels + IMAGE_EXTRA_BYTES
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # --max-pixels decides, below, from the header; Pillow's own check is off
    try:
        with open_user_file(path, "image", limit) as f:
            try:
                with Image.open(f) as im:
                    W, H = im.size
                    if W * H > max_pixels:
                        raise FastposeError(
                            f"image {shown!r} is {W}x{H} = {W * H / 1e6:.1f} megapixels, over the limit of "
                            f"{max_pixels / 1e6:g} (--max-pixels {max_pixels}); pass --max-pixels {W * H} to read it")
                    if W < 1 or H < 1:
                        raise FastposeError(f"image {shown!r} has no pixels ({W}x{H})")
                    return im.convert("RGB")
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error,
                    Image.DecompressionBombError) as exc:  # what Pillow's decoders raise on a broken file
                raise FastposeError(f"cannot read image {shown!r}: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def predict_images(ref: str, images: list[str], intrinsics: str | None = None, out: str | None = None,
                   checkpoint: str = "best", json_out: bool = False, max_pixels: int = MAX_PIXELS,
                   min_score: float = DEFAULT_MIN_SCORE) -> list[dict[str, Any]]:
    """The ``fastpose predict`` command (see the module docstring); returns the per-image results."""
    import sys

    from fastpose.config import check_int

    check_int("--max-pixels", max_pixels, 1, MAX_PIXELS_CEILING)
    if not (isinstance(min_score, (int, float)) and 0.0 <= min_score <= 1.0):
        raise FastposeError(f"--min-score must be a number from 0 to 1 (a detection's mean class probability), "
                            f"got {min_score}")
    K_user = parse_intrinsics(intrinsics)
    paths = [Path(p) for p in images]
    opened = [read_image(p, max_pixels) for p in paths]
    if K_user is not None:
        for p, image in zip(paths, opened):
            check_intrinsics(K_user, *image.size, str(p))
    out_dir = Path(out) if out else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise FastposeError(f"--out {str(out_dir)!r} is not a directory")

    import torch

    from fastpose.journal.access import read_run
    from fastpose.journal.db import missing_journal
    from fastpose.pose.camera import image_hw
    from fastpose.training.evaluate import find_checkpoint, load_checkpoint

    run = read_run(ref, FastposeError(missing_journal()))
    out_dir = out_dir or Path(run.run_dir or ".") / "predictions"
    overlays = overlay_paths(paths, out_dir)
    for overlay in overlays:
        if overlay.is_dir():
            raise FastposeError(f"cannot write overlay {str(overlay)!r}: it is a directory")
    model, config, has_3d = load_checkpoint(find_checkpoint(run, checkpoint))
    if not has_3d:
        raise FastposeError(f"run {run.id} ({run.label}) predates the translation and size heads; retrain it")
    run_hw = image_hw(config.data.image_size)
    from fastpose.text import strict_json, visible

    for line in warnings(run, config, paths, opened, K_user is None):
        print(f"warning: {visible(line, newlines=False)}", file=sys.stderr)
    results = []
    for path, image, overlay in zip(paths, opened, overlays):
        K = camera(*image.size, K_user)
        x, K_net, frame = prepare(image, run_hw, K)
        with torch.inference_mode():
            objects, below = detections(lambda batch: model(batch), x, K_net, min_score)
        w, h = draw_overlay(image, objects, K, overlay)
        results.append({"image": str(path), "width": image.size[0], "height": image.size[1],
                        "intrinsics": "assumed" if K_user is None else "given", "K": K.tolist(),
                        "network_input": {"width": run_hw[1], "height": run_hw[0], "fit": "letterbox",
                                          "scale": [round(v, 6) for v in frame.scale], "pad": list(frame.pad)},
                        "overlay": str(overlay), "overlay_width": w, "overlay_height": h,
                        "min_score": min_score, "below_min_score": below, "objects": objects})
    if json_out:
        print(strict_json({"run": {"id": run.id, "label": run.label}, "min_score": min_score, "images": results},
                          indent=2))
    else:
        for r in results:
            drawn = f"{r['overlay_width']}x{r['overlay_height']}"
            print(f"{visible(r['image'])}: {len(r['objects'])} object(s) scoring >= {min_score:g} (--min-score; "
                  f"{r['below_min_score']} below); overlay {visible(r['overlay'])} ({drawn})")
            for o in r["objects"]:
                t = ", ".join(f"{v:.3f}" for v in o["translation"])
                print(f"  {o['class']:<7} {o['score']:.2f}  t = ({t}) m")
    return results


def detections(network: Any, x: Any, K_net: Any, min_score: float) -> tuple[list[dict[str, Any]], int]:
    """``(objects scoring >= min_score, best first; how many scored below)`` for one prepared image ``x``
    (3, H, W) with its intrinsics ``K_net`` (3, 3): ``network`` maps a batch (1, 3, H, W) to the network's
    outputs. Poses are in the camera's frame, which letterboxing does not change: translations and sizes
    are in metres in the original image's camera."""
    import torch

    from fastpose.pose.data.synthetic import CLASSES
    from fastpose.pose.evaluation import detect

    det = detect(network(x[None]), K_net[None])
    order = torch.argsort(det["score"], descending=True).tolist()
    kept = [k for k in order if float(det["score"][k]) >= min_score]
    objects = [{"class": CLASSES[int(det["class_id"][k]) - 1], "score": round(float(det["score"][k]), 4),
                "quaternion": [round(float(v), 6) for v in det["quat"][k]],
                "translation": [round(float(v), 5) for v in det["trans"][k]],
                "size": [round(float(v), 5) for v in det["size"][k]]} for k in kept]
    return objects, len(order) - len(kept)


def warnings(run: Any, config: Any, paths: list[Path], images: list[Any], assumed: bool) -> list[str]:
    """What the user must know before trusting the numbers, one line each: the camera that was assumed (no
    ``--intrinsics``), and a network trained on rendered scenes only shown images that are not renders."""
    out = []
    if assumed:
        W, H = images[0].size
        f = min(W, H)
        out.append(f"no --intrinsics: assumed the synthetic camera for every image, fx = fy = the shorter side, "
                   f"principal point at the centre ({paths[0].name} {W}x{H}: fx = fy = {f}, cx = {W / 2:g}, "
                   f"cy = {H / 2:g}); translations and sizes in metres hold only for that camera")
    if config.data.dataset == "synthetic":
        foreign = [p for p, image in zip(paths, images) if RENDER_TAG not in getattr(image, "info", {})]
        if foreign:
            which = repr(foreign[0].name) if len(foreign) == 1 else f"{len(foreign)} of {len(paths)} images"
            out.append(f"run {run.id} ({run.name}) was trained on rendered synthetic scenes only, and {which} "
                       f"{'is not one' if len(foreign) == 1 else 'are not'} (fastpose render makes them): "
                       "its detections there are outside what it learned")
    return out
