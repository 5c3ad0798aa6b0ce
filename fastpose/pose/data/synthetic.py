"""Procedural NOCS-style scenes, ray-cast in torch: the embedded default dataset (no files needed).

Each image holds 1..``max_objects`` objects from the six NOCS categories, each built from a handful of
analytic primitives (boxes, capped cylinders, ellipsoids, half-ellipsoids) with distinct part colours, so
that orientation is visible: the mug has a handle and a logo on one side, the camera a lens, a viewfinder
and a red button, the laptop a dark keyboard and a blue screen on a hinge. Bottle, bowl and can are
rotationally symmetric about their y axis (the NOCS convention) and differ top from bottom (cap, inner
surface, lid).

Rendering: a pinhole camera (OpenCV frame: x right, y down, z forward) casts one ray per pixel centre;
each primitive is intersected analytically in its own unit frame (slabs and a quadric), the nearest hit
wins (z-buffer across objects, so objects occlude each other), and shading is Lambertian with a light
from the upper left (jittered) plus ambient. Each surface's albedo is blended (50%) with its object-frame
normal read as a colour (for symmetric classes only the normal's y part), so the faces of one part
differ: a painted-on orientation cue that helps a small network read rotation from small images. The
background is a colour gradient with low-frequency noise, stripes and grain.

Ground truth follows ``docs/ARCHITECTURE.md``. Per instance: ``inst_rot`` maps object to camera
coordinates, ``inst_trans`` is the object's bounding-box centre in the camera frame, ``inst_size`` its
bounding-box extents, and a visible surface point satisfies::

    camera_point = inst_rot @ ((nocs - 0.5) * norm(inst_size)) + inst_trans      # depth * K^-1 [u, v, 1]

For the symmetric categories the rotation about the y axis is unobservable, so their ground-truth
rotation is canonicalised (before rendering, which leaves the image unchanged): the object's x axis is
``normalise(y x z_camera)``. Every target is then a function of the image.

Everything random is drawn from ``numpy.random.Generator(SeedSequence([seed, index]))``, so a sample
depends only on ``(seed, index)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


CLASSES = ("bottle", "bowl", "camera", "can", "laptop", "mug")  # class ids 1..6, 0 = background
SYMMETRIC_CLASSES = (1, 2, 4)  # bottle, bowl, can: symmetric about the object's y axis
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INF = float("inf")
_FACE_TINT = 0.5  # weight of the object-frame normal colour in each surface's albedo
# Primitive kinds: rows of _KINDS = (quadric axes, slab lower bounds, slab upper bounds) in the
# primitive's unit frame.
_BOX, _CYL, _ELL, _HALF_ELL = 0, 1, 2, 3
_KINDS = np.array([
    ((0, 0, 0), (-1, -1, -1), (1, 1, 1)),  # box
    ((1, 0, 1), (-_INF, -1, -_INF), (_INF, 1, _INF)),  # capped cylinder along y
    ((1, 1, 1), (-_INF, -_INF, -_INF), (_INF, _INF, _INF)),  # ellipsoid
    ((1, 1, 1), (-_INF, -1, -_INF), (_INF, 0, _INF)),  # lower half (y <= 0) of an ellipsoid
], dtype=np.float64)


def normalize_image(rgb: Tensor) -> Tensor:
    """(3, H, W) RGB in [0, 1] -> ImageNet-normalised float32 (the ``image`` of every batch)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=rgb.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=rgb.dtype).view(3, 1, 1)
    return (rgb - mean) / std


def denormalize_image(image: Tensor) -> Tensor:
    """Inverse of ``normalize_image``: back to RGB in [0, 1] (for drawing)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * std + mean).clamp(0, 1)


def intrinsics_for(image_size: int) -> Tensor:
    """The synthetic pinhole camera for a square image: focal length = image side (about 53 degrees FOV)."""
    f, c = float(image_size), image_size / 2.0
    return torch.tensor([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]], dtype=torch.float32)


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


class _Parts:
    """Collects the primitives of one object in its own frame (y up, metres); ``arrays()`` stacks them."""

    def __init__(self) -> None:
        self.kinds: list[int] = []
        self.centres: list = []
        self.halves: list = []
        self.colours: list = []
        self.rots: list = []

    def add(self, kind, centre, half, colour, rot=None) -> None:
        self.kinds.append(kind)
        self.centres.append(centre)
        self.halves.append(half)
        self.colours.append(colour)
        self.rots.append(_EYE if rot is None else rot)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """(kinds (k,), centres (k,3), half-extents (k,3), colours (k,3), rotations (k,3,3))."""
        return (np.array(self.kinds), np.array(self.centres, float), np.array(self.halves, float),
                np.array(self.colours, float), np.array(self.rots, float))

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds (lo, hi) of the primitives' (rotated) bounding boxes, in the object frame."""
        kinds, centres, halves, _, rots = self.arrays()
        half = halves[:, None, :] * _CORNERS  # (k,8,3)
        half[:, :, 1] = np.where((kinds == _HALF_ELL)[:, None], np.minimum(half[:, :, 1], 0.0), half[:, :, 1])
        pts = np.einsum("kij,kcj->kci", rots, half) + centres[:, None, :]
        return pts.reshape(-1, 3).min(0), pts.reshape(-1, 3).max(0)


_EYE = np.eye(3)
_CORNERS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)


def _jitter(rng: np.random.Generator, colour, amount: float = 0.08) -> np.ndarray:
    return np.clip(np.asarray(colour, float) + rng.uniform(-amount, amount, 3), 0.02, 0.98)


def _vivid(rng: np.random.Generator) -> np.ndarray:
    """A random saturated colour (hue uniform), for bodies whose colour varies between instances."""
    h = rng.uniform(0, 1)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    rgb = 1 - np.clip(np.minimum(k, 4 - k), 0, 1)
    sat, val = rng.uniform(0.5, 0.9), rng.uniform(0.55, 0.95)
    return val * (1 - sat + sat * rgb)


def _build(cls: int, rng: np.random.Generator) -> _Parts:
    u = rng.uniform
    p = _Parts()
    if cls == 1:  # bottle: body, shoulder, neck, cap, label band
        r, h = u(0.028, 0.04), u(0.06, 0.09)
        glass = _vivid(rng) * 0.6 + 0.2
        p.add(_CYL, (0, 0, 0), (r, h, r), glass)
        p.add(_ELL, (0, h, 0), (r, 0.6 * r, r), glass)
        nh = u(0.02, 0.03)
        p.add(_CYL, (0, h + 0.5 * r + nh, 0), (0.38 * r, nh, 0.38 * r), glass)
        p.add(_CYL, (0, h + 0.5 * r + 2 * nh + 0.008, 0), (0.45 * r, 0.01, 0.45 * r), _jitter(rng, (0.9, 0.9, 0.2)))
        p.add(_CYL, (0, -0.1 * h, 0), (1.04 * r, 0.45 * h, 1.04 * r), _jitter(rng, (0.95, 0.95, 0.95), 0.05))
    elif cls == 2:  # bowl: lower half-ellipsoid, darker inner disc at the rim, a foot ring
        r, d = u(0.06, 0.08), u(0.035, 0.05)
        outer = _vivid(rng)
        p.add(_HALF_ELL, (0, 0, 0), (r, d, r), outer)
        p.add(_CYL, (0, 0.0015, 0), (0.93 * r, 0.0015, 0.93 * r), _jitter(rng, outer * 0.45 + 0.1))
        p.add(_CYL, (0, -d + 0.004, 0), (0.45 * r, 0.006, 0.45 * r), _jitter(rng, (0.85, 0.85, 0.8)))
    elif cls == 3:  # camera: body, lens barrel + glass (front, +z), viewfinder hump, red button (top right)
        w, hh, dd = u(0.05, 0.07), u(0.03, 0.045), u(0.02, 0.03)
        p.add(_BOX, (0, 0, 0), (w, hh, dd), _jitter(rng, (0.2, 0.2, 0.22), 0.1))
        lr, ll = u(0.45, 0.6) * hh, u(0.015, 0.03)
        lens_rot = _rx(math.pi / 2)  # cylinder axis y -> z
        p.add(_CYL, (-0.15 * w, -0.1 * hh, dd + ll), (lr, ll, lr), _jitter(rng, (0.75, 0.75, 0.78), 0.05), lens_rot)
        p.add(_CYL, (-0.15 * w, -0.1 * hh, dd + 2 * ll + 0.002), (0.7 * lr, 0.002, 0.7 * lr),
              _jitter(rng, (0.15, 0.3, 0.75), 0.05), lens_rot)
        p.add(_BOX, (-0.15 * w, hh + 0.008, 0), (0.3 * w, 0.008, 0.7 * dd), _jitter(rng, (0.45, 0.45, 0.5), 0.05))
        p.add(_CYL, (0.65 * w, hh + 0.005, 0.2 * dd), (0.09 * w, 0.005, 0.09 * w), _jitter(rng, (0.9, 0.1, 0.1), 0.05))
    elif cls == 4:  # can: body, label band, silver lid on top
        r, h = u(0.028, 0.04), u(0.045, 0.065)
        p.add(_CYL, (0, 0, 0), (r, h, r), _jitter(rng, (0.7, 0.7, 0.72), 0.05))
        p.add(_CYL, (0, -0.05 * h, 0), (1.02 * r, 0.75 * h, 1.02 * r), _vivid(rng))
        p.add(_CYL, (0, h + 0.002, 0), (0.9 * r, 0.002, 0.9 * r), _jitter(rng, (0.9, 0.9, 0.92), 0.04))
    elif cls == 5:  # laptop: base, keyboard, screen on a hinge at the back, display facing the keyboard
        w, dpt, th = u(0.12, 0.16), u(0.08, 0.11), u(0.006, 0.01)
        shell = _jitter(rng, (0.7, 0.7, 0.72), 0.15)
        p.add(_BOX, (0, 0, 0), (w, th, dpt), shell)
        p.add(_BOX, (0, th + 0.0015, 0.1 * dpt), (0.85 * w, 0.0015, 0.55 * dpt), _jitter(rng, (0.1, 0.1, 0.12), 0.05))
        ang = u(math.radians(95), math.radians(125))
        rot = _rx(-ang)  # screen's local z (towards the front when closed) swings up and back
        hinge = np.array([0.0, th, -dpt])
        p.add(_BOX, hinge + rot @ np.array([0, th, dpt]), (w, th, dpt), shell, rot)
        p.add(_BOX, hinge + rot @ np.array([0, -0.0015, dpt]), (0.9 * w, 0.0015, 0.85 * dpt),
              _jitter(rng, (0.15, 0.35, 0.85), 0.08), rot)
    else:  # mug: body, dark inside at the top, handle (+x) in a contrasting colour, logo (+z)
        r, h = u(0.035, 0.045), u(0.04, 0.055)
        body = _vivid(rng)
        p.add(_CYL, (0, 0, 0), (r, h, r), body)
        p.add(_CYL, (0, h + 0.0015, 0), (0.85 * r, 0.0015, 0.85 * r), _jitter(rng, body * 0.3 + 0.05))
        handle = _jitter(rng, 1.0 - body, 0.1)
        reach, bar = u(0.025, 0.035), 0.007
        p.add(_BOX, (r + reach / 2, 0.6 * h, 0), (reach / 2 + 0.003, bar, bar), handle)
        p.add(_BOX, (r + reach / 2, -0.6 * h, 0), (reach / 2 + 0.003, bar, bar), handle)
        p.add(_BOX, (r + reach, 0, 0), (bar, 0.6 * h + bar, bar), handle)
        p.add(_BOX, (0, 0.1 * h, r), (0.4 * r, 0.35 * h, 0.004), _jitter(rng, (0.95, 0.95, 0.9), 0.05))
    return p


def _sample_rotation(rng: np.random.Generator, mode: str) -> np.ndarray:
    if mode == "so3":  # Shoemake's uniform quaternion
        u1, u2, u3 = rng.random(3)
        a, b = math.sqrt(1 - u1), math.sqrt(u1)
        x, y, z, w = a * math.sin(2 * math.pi * u2), a * math.cos(2 * math.pi * u2), \
            b * math.sin(2 * math.pi * u3), b * math.cos(2 * math.pi * u3)
        return np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ])
    # tabletop: upright (object y = camera up), any yaw, a small tilt, seen from 10-60 degrees above.
    yaw = rng.uniform(-math.pi, math.pi)
    tilt_axis = rng.uniform(-math.pi, math.pi)
    tilt = _ry(tilt_axis) @ _rx(rng.uniform(0, math.radians(10))) @ _ry(-tilt_axis)
    up_to_cam = np.diag([1.0, -1.0, -1.0])  # object y (up) -> camera -y (up in the image)
    return _rx(rng.uniform(math.radians(10), math.radians(60))) @ up_to_cam @ tilt @ _ry(yaw)


def _canonical_symmetric(R: np.ndarray) -> np.ndarray:
    """The rotation with the same y axis whose x axis is ``normalise(y x z_camera)``."""
    y0, y1, y2 = R[:, 1]
    x = np.array([y1, -y0, 0.0]) if y0 * y0 + y1 * y1 > 1e-12 else np.array([0.0, y2, -y1])
    x = x / math.sqrt(x @ x)
    z = np.array([x[1] * y2 - x[2] * y1, x[2] * y0 - x[0] * y2, x[0] * y1 - x[1] * y0])
    return np.stack([x, R[:, 1], z], axis=1)


def _quat_of(R: np.ndarray) -> tuple[float, float, float, float]:
    """Canonical (w >= 0) scalar-last quaternion of one rotation matrix (Shepperd's largest pivot)."""
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = R.tolist()
    tr = m00 + m11 + m22
    best = max(tr, m00, m11, m22)
    if best == tr:
        r = math.sqrt(1 + tr) * 2
        q = ((m21 - m12) / r, (m02 - m20) / r, (m10 - m01) / r, r / 4)
    elif best == m00:
        r = math.sqrt(max(1 + m00 - m11 - m22, 1e-12)) * 2
        q = (r / 4, (m01 + m10) / r, (m02 + m20) / r, (m21 - m12) / r)
    elif best == m11:
        r = math.sqrt(max(1 - m00 + m11 - m22, 1e-12)) * 2
        q = ((m01 + m10) / r, r / 4, (m12 + m21) / r, (m02 - m20) / r)
    else:
        r = math.sqrt(max(1 - m00 - m11 + m22, 1e-12)) * 2
        q = ((m02 + m20) / r, (m12 + m21) / r, r / 4, (m10 - m01) / r)
    n = math.sqrt(sum(c * c for c in q)) * (-1 if q[3] < 0 else 1)
    return tuple(c / n for c in q)


class SyntheticPoseDataset(Dataset):
    """``size`` procedural scenes; sample ``i`` depends only on ``(seed, i)``. See the module docstring.

    ``rotations``: ``"so3"`` (uniform over all rotations, the loss study's default) or ``"tabletop"``
    (upright with up to 10 degrees of tilt, any yaw, seen from 10-60 degrees above).
    Returns the per-sample dict of ``docs/ARCHITECTURE.md`` (instances padded to ``max_objects``; padded
    slots are all zeros with ``inst_valid`` False; a slot whose object is completely hidden is padded too).
    """

    def __init__(self, size: int, image_size: int = 64, seed: int = 0, rotations: str = "so3",
                 max_objects: int = 3) -> None:
        if rotations not in ("so3", "tabletop"):
            raise ValueError(f"rotations must be 'so3' or 'tabletop', got {rotations!r}")
        if size < 0 or image_size < 8 or max_objects < 1:
            raise ValueError("size >= 0, image_size >= 8 and max_objects >= 1 required")
        self.size, self.image_size, self.seed = size, image_size, seed
        self.rotations, self.max_objects = rotations, max_objects
        self.intrinsics = intrinsics_for(image_size)
        s = image_size
        v, u = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32),
                              indexing="ij")
        f, c = float(s), s / 2.0
        # Ray per pixel centre with z = 1, so the ray parameter of a hit is its depth.
        self._rays = torch.stack([(u + 0.5 - c) / f, (v + 0.5 - c) / f, torch.ones_like(u)], -1).reshape(-1, 3)
        self._rays_unit = self._rays / self._rays.norm(dim=-1, keepdim=True)
        self._interp = torch.nn.functional.interpolate(  # (s, 5) bilinear weights, align_corners=True
            torch.eye(5)[None], size=s, mode="linear", align_corners=True)[0].T.contiguous()
        self._grain = torch.from_numpy(  # fixed, so that every sample stays a function of (seed, index)
            np.random.default_rng(12345).standard_normal((3, 2 * s, 2 * s), dtype=np.float32) * 0.03)
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
        self._grid = (xx, yy)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, index]))
        return self._render(rng)

    # ------------------------------------------------------------------ scene sampling
    def _scene(self, rng: np.random.Generator):
        s, M = self.image_size, self.max_objects
        n = int(rng.integers(1, M + 1))
        objects = []
        centres: list[np.ndarray] = []
        for k in range(n):
            cls = int(rng.integers(1, 7))
            parts = _build(cls, rng)
            lo, hi = parts.bbox()
            target = rng.uniform(0.22, 0.3)  # bounding-box diagonal in metres
            scale = target / np.linalg.norm(hi - lo)
            centre = (lo + hi) / 2
            R = _sample_rotation(rng, self.rotations)
            if cls in SYMMETRIC_CLASSES:
                R = _canonical_symmetric(R)
            # Place the projected centre away from the others (a few tries), then pick a depth.
            for _ in range(20):
                pix = rng.uniform(0.22 * s, 0.78 * s, 2)
                if all(((pix - c) ** 2).sum() > (0.3 * s) ** 2 for c in centres):
                    break
            centres.append(pix)
            z = rng.uniform(0.45, 0.75)
            t = np.array([(pix[0] - s / 2) / s * z, (pix[1] - s / 2) / s * z, z])
            objects.append(dict(cls=cls, parts=parts, scale=scale, centre=centre, R=R, t=t,
                                size=(hi - lo) * scale))
        return objects

    # ------------------------------------------------------------------ rendering
    def _render(self, rng: np.random.Generator) -> dict[str, Tensor]:
        s, M = self.image_size, self.max_objects
        objects = self._scene(rng)
        n_obj = len(objects)
        # Stack every primitive of every object, in camera coordinates, with its half-extents.
        kinds, rots, cens, halfs, cols, owner = [], [], [], [], [], []
        for k, ob in enumerate(objects):
            kind, centre, half, colour, rot = ob["parts"].arrays()
            kinds.append(kind)
            rots.append(ob["R"] @ rot)
            cens.append((centre - ob["centre"]) * ob["scale"] @ ob["R"].T + ob["t"])
            halfs.append(half * ob["scale"])
            cols.append(colour)
            owner += [k] * len(kind)
        Rp = torch.from_numpy(np.concatenate(rots)).float()  # (P,3,3) primitive -> camera
        cp = torch.from_numpy(np.concatenate(cens)).float()  # (P,3)
        ap = torch.from_numpy(np.concatenate(halfs)).float()  # (P,3)
        table = torch.from_numpy(_KINDS[np.concatenate(kinds)]).float()  # (P, 3, 3)
        mq, lo, hi = table[:, 0], table[:, 1], table[:, 2]
        owner_t = torch.tensor(owner)
        R_np = np.stack([ob["R"] for ob in objects])
        obj_t = torch.from_numpy(np.stack([ob["t"] for ob in objects])).float()  # (n,3)
        size_obj = torch.from_numpy(np.stack([ob["size"] for ob in objects])).float()
        R_obj = torch.from_numpy(R_np).float()
        quat_obj = torch.tensor([_quat_of(R) for R in R_np], dtype=torch.float32)
        cls_obj = torch.tensor([ob["cls"] for ob in objects])

        # Cull: only rays that pass near some object's bounding sphere are tested against primitives.
        obj_r = size_obj.norm(dim=-1) * 0.55
        along = self._rays_unit @ obj_t.T  # (HW, n)
        near = ((obj_t * obj_t).sum(-1) - along * along < obj_r * obj_r).any(dim=1)
        idx = near.nonzero().squeeze(1)
        d = self._rays[idx]  # (K,3)

        # Ray-primitive intersection in each primitive's unit frame, laid out (axis, primitive, ray) so that
        # reductions over the three axes are cheap. A box gets a vanishing quadric (a huge sphere).
        P = Rp.shape[0]
        o = (torch.einsum("pji,pj->pi", Rp, -cp) / ap).T.contiguous()[:, :, None]  # camera centre (3,P,1)
        to_unit = (Rp.transpose(1, 2) / ap[:, :, None]).permute(1, 0, 2).reshape(3 * P, 3)
        D = (to_unit @ d.T).view(3, P, -1)  # ray directions (3,P,K)
        mq3 = mq.clamp_min(1e-6).T.contiguous()[:, :, None]  # (3,P,1)
        Dq = D * mq3
        A = (Dq * D).sum(0)
        B = 2 * (Dq * o).sum(0)
        C = (o * o * mq3).sum(0) - 1
        disc = B * B - 4 * A * C
        sq = disc.clamp_min(0).sqrt()
        inv2a = 0.5 / A.clamp_min(1e-20)
        q_in, q_out = (-B - sq) * inv2a, (-B + sq) * inv2a
        # Slabs: a ray parallel to a slab gives +-inf here, which is the right answer.
        t1 = (lo.T[:, :, None] - o) / D
        t2 = (hi.T[:, :, None] - o) / D
        s_in_max = torch.minimum(t1, t2).amax(0)
        t_in = torch.maximum(q_in, s_in_max)
        t_out = torch.minimum(q_out, torch.maximum(t1, t2).amin(0))
        hit = (disc >= 0) & (t_in <= t_out) & (t_in > 1e-3)
        t_best, p_best = t_in.masked_fill(~hit, _INF).min(0)  # z-buffer over all primitives: (K,)
        fg = torch.isfinite(t_best).nonzero().squeeze(1)
        pix, depth_f, prim = idx[fg], t_best[fg], p_best[fg]  # the F visible surface pixels
        own = owner_t[prim]

        # Normals at the visible hits: the quadric's gradient or the entered slab's face, to camera frame.
        Dw = D[:, prim, fg].T  # (F,3)
        ow = o[:, prim, 0].T
        local = ow + depth_f[:, None] * Dw
        s_w = torch.minimum((lo[prim] - ow) / Dw, (hi[prim] - ow) / Dw)
        by_quad = (q_in[prim, fg] >= s_in_max[prim, fg])[:, None]
        axis = torch.nn.functional.one_hot(s_w.argmax(-1), 3).float()
        n_local = torch.where(by_quad, local * mq[prim], -torch.sign(Dw) * axis) / ap[prim]
        F_ = pix.numel()
        n_cam = (Rp.reshape(3 * P, 3) @ n_local.T).view(P, 3, F_)[prim, :, torch.arange(F_)]
        n_cam = n_cam / n_cam.norm(dim=-1, keepdim=True).clamp_min(1e-9)

        # Shading.
        light = torch.tensor([rng.uniform(-0.6, -0.2), rng.uniform(-0.9, -0.5), -1.0], dtype=torch.float32)
        light = light / light.norm()
        ambient = float(rng.uniform(0.3, 0.45))
        albedo = torch.from_numpy(np.concatenate(cols)).float() * float(rng.uniform(0.85, 1.15))  # brightness jitter
        shade = ambient + (1 - ambient) * (n_cam @ light).clamp_min(0)
        # Paint: blend each surface's albedo with its object-frame normal as a colour (only the y part for
        # the symmetric classes, which keeps them symmetric), so faces of one part differ: orientation cue.
        nrm_obj = (R_obj.transpose(1, 2) @ n_cam.T.unsqueeze(0))[own, :, torch.arange(F_)]
        sym = torch.tensor([ob["cls"] in SYMMETRIC_CLASSES for ob in objects])[own, None]
        tint = 0.5 + 0.5 * torch.where(sym, nrm_obj[:, 1:2].expand(-1, 3), nrm_obj)
        colour = (((1 - _FACE_TINT) * albedo[prim] + _FACE_TINT * tint) * shade[:, None]).clamp(0, 1)

        # Background: gradient + low-frequency noise + stripes + grain.
        xx, yy = self._grid
        c0, c1 = torch.from_numpy(rng.uniform(0.1, 0.9, (2, 3, 1, 1)).astype(np.float32))
        ang = rng.uniform(0, 2 * math.pi)
        g = (math.cos(ang) * xx + math.sin(ang) * yy) * 0.5 + 0.5
        bg = c0 + (c1 - c0) * g
        low = torch.from_numpy(rng.uniform(-0.15, 0.15, (3, 5, 5)).astype(np.float32))
        bg = bg + self._interp @ low @ self._interp.T  # bilinear upsampling as two small matmuls
        freq, sang = rng.uniform(4, 14), rng.uniform(0, math.pi)
        stripes = torch.sin(freq * (math.cos(sang) * xx + math.sin(sang) * yy) + rng.uniform(0, 6.3))
        bg = bg + float(rng.uniform(0.0, 0.12)) * stripes
        oy, ox = rng.integers(0, s, 2)  # grain: a random crop of a fixed noise tile
        bg = bg + self._grain[:, oy:oy + s, ox:ox + s]
        rgb = bg.clamp(0, 1).reshape(3, -1)
        rgb[:, pix] = colour.T

        # Per-pixel ground truth: one scatter of [class, instance, depth, nocs(3), quaternion(4)].
        R_own = R_obj[own]
        pts = d[fg] * depth_f[:, None]  # camera points (F,3)
        p_obj = (R_obj.transpose(1, 2) @ (pts.T.unsqueeze(0) - obj_t[:, :, None]))[own, :, torch.arange(F_)]
        nocs = (p_obj / size_obj.norm(dim=-1)[own, None] + 0.5).clamp(0, 1)
        del R_own
        HW = s * s
        fields = torch.zeros(10, HW)
        fields[:, pix] = torch.cat([cls_obj[own, None].float(), (own + 1)[:, None].float(), depth_f[:, None],
                                    nocs, quat_obj[own]], dim=1).T
        valid_obj = torch.bincount(own, minlength=n_obj) > 0

        # Instance slots; an object hidden completely is dropped (padded slot).
        inst_valid = torch.zeros(M, dtype=torch.bool)
        inst_valid[:n_obj] = valid_obj
        v = valid_obj.unsqueeze(-1)

        def pad(x: Tensor) -> Tensor:
            out = torch.zeros((M,) + x.shape[1:], dtype=x.dtype)
            out[:n_obj] = x * v.view((-1,) + (1,) * (x.dim() - 1))
            return out

        return {
            "image": ((rgb.reshape(3, s, s) - self._mean) / self._std),
            "class_mask": fields[0].long().reshape(s, s),
            "instance_mask": fields[1].long().reshape(s, s),
            "quaternion_map": fields[6:10].reshape(4, s, s),
            "nocs": fields[3:6].reshape(3, s, s),
            "depth": fields[2].reshape(s, s),
            "intrinsics": self.intrinsics.clone(),
            "inst_valid": inst_valid,
            "inst_class": pad(cls_obj),
            "inst_quat": pad(quat_obj),
            "inst_rot": pad(R_obj),
            "inst_trans": pad(obj_t),
            "inst_size": pad(size_obj),
        }
