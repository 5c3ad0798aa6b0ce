"""NOCS's own ground-truth files (``<root>/gts/<split>/results_<split>_<scene>_<id>.pkl``), read without running code.

The NOCS authors (Wang et al. 2019) distribute the ground truth of their evaluation splits as one pickle
per image, named as their ``detect_eval.py`` names its results: ``gts/val/results_val_00000_0000.pkl``
(CAMERA25 validation, scene folder ``00000``, image ``0000``) and
``gts/real_test/results_real_test_scene_1_0000.pkl`` (REAL275 test). Each holds a dict; the keys read
here, as the authors' evaluation (``utils.compute_degree_cm_mAP``) reads them:

========================  ===========  =================================================================
``gt_class_ids``          (N,) int     class 1..6 (bottle, bowl, camera, can, laptop, mug)
``gt_RTs``                (N, 4, 4)    object to camera with the scale folded in: ``[[s R, t], [0, 1]]``,
                                       ``t`` in metres; ``s = cbrt(det(sR))`` (as ``compute_RT_degree_cm_
                                       symmetry`` divides it out) is the box diagonal in metres
``gt_scales``             (N, 3)       box extents of the object's model normalised to diagonal 1; the box
                                       in metres is ``s * gt_scales`` (``compute_3d_iou_new`` poses the
                                       corners ``+-gt_scales / 2`` by ``gt_RTs``)
``gt_handle_visibility``  (N,) int     mug: 0 when its handle is hidden (the evaluation then treats it as
                                       symmetric about y); 1 otherwise. Older files name it
                                       ``handle_visibility``; without either, all 1 (as the authors do)
``gt_bboxes``             (N, 4) int   2D boxes ``(y1, x1, y2, x2)`` of the masks (not used for scoring)
========================  ===========  =================================================================

Row ``j`` is the ``j``-th object of the image in the order of the authors' loader: the instance ids found in
``_mask.png``, sorted, keeping those whose ``_meta.txt`` class is 1..6.

Safety. A pickle names the callables that rebuild it, and ``pickle.load`` calls them: a crafted file runs
whatever it names (``os.system``...). ``load_pickle`` uses ``SafeUnpickler``, which admits only the globals
numpy needs to rebuild arrays, dtypes and scalars (``SAFE_GLOBALS``; protocols 2 to 5) and builds nothing
else beyond dicts, lists, tuples, strings, bytes, numbers, booleans and ``None`` (pickle's own opcodes, no
global involved). Any other global is refused before it is called: ``GroundTruthRefused``, one line naming
the file and the global. ``read_ground_truth`` then checks every key's type and shape.

``write_ground_truth`` writes the same format (plain ``pickle.dump`` of a dict of numpy arrays, as the authors
do): the fixtures of the tests, and a way to hand ground truth to NOCS tooling.
"""

from __future__ import annotations

import codecs
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastpose.errors import FastposeError

# module, name -> what it rebuilds. numpy 1.x pickles name ``numpy.core``, numpy 2.x ``numpy._core``.
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "an array (protocols 2-4)",
    ("numpy._core.multiarray", "_reconstruct"): "an array (protocols 2-4)",
    ("numpy.core.multiarray", "scalar"): "a numpy scalar",
    ("numpy._core.multiarray", "scalar"): "a numpy scalar",
    ("numpy.core.numeric", "_frombuffer"): "an array (protocol 5)",
    ("numpy._core.numeric", "_frombuffer"): "an array (protocol 5)",
    ("numpy", "ndarray"): "the array type",
    ("numpy", "dtype"): "an array's dtype",
    ("_codecs", "encode"): "bytes in a protocol-2 pickle (latin-1 only)",
}


class GroundTruthRefused(FastposeError):
    """The pickle names a global beyond ``SAFE_GLOBALS`` (it would call it while loading): never loaded."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it (``bytes`` written as latin-1 text); no other codec."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1") or errors != "strict":
        raise pickle.UnpicklingError(f"global '_codecs.encode' with encoding {encoding!r} is forbidden")
    return codecs.encode(text, "latin-1")


class SafeUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` whose ``find_class`` admits only ``SAFE_GLOBALS``."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is forbidden")
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        return super().find_class(module, name)


def load_pickle(path: str | Path, what: str = "NOCS ground-truth file") -> Any:
    """The object in the pickle ``path``, rebuilt by ``SafeUnpickler`` (numpy arrays and plain data only).

    ``GroundTruthRefused`` when it names any other global; ``FastposeError`` when it cannot be read."""
    path = Path(path)
    shown = repr(str(path))
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, encoding="latin1").load()  # latin1: numpy arrays in Python 2 pickles
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if message.startswith("global '"):
            name = message.split("'")[1]
            raise GroundTruthRefused(f"refused {what} {shown}: loading it would call {name}; only numpy arrays, "
                                     "dicts, lists, numbers and strings are read from these files") from None
        raise FastposeError(f"cannot read {what} {shown}: {message.splitlines()[0] if message else 'not a pickle'}") from None
    except OSError as exc:
        raise FastposeError(f"cannot read {what} {shown}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - a truncated or malformed pickle raises anything (EOFError, ...)
        raise FastposeError(f"cannot read {what} {shown}: {type(exc).__name__}: {exc}".splitlines()[0]) from None


@dataclass(frozen=True)
class GroundTruth:
    """One image's ground truth from a NOCS file, in metres, object to camera (N objects)."""

    class_ids: np.ndarray  # (N,) int64, 1..6
    rotations: np.ndarray  # (N, 3, 3) float64, proper rotations
    translations: np.ndarray  # (N, 3) float64, metres
    sizes: np.ndarray  # (N, 3) float64, box extents in metres
    handle_visible: np.ndarray  # (N,) bool


def _array(value: Any, shape: tuple, key: str, path: Path, kind: str = "f") -> np.ndarray:
    """``value`` as a numpy array of ``shape`` (``-1`` = any length) and kind (``f`` float, ``i`` integer)."""
    arr = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else None
    ok = arr is not None and arr.ndim == len(shape) and all(s in (-1, n) for s, n in zip(shape, arr.shape))
    if ok and kind == "i":
        ok = arr.dtype.kind in "iub" or (arr.dtype.kind == "f" and bool(np.all(arr == np.round(arr))))
    elif ok:
        ok = arr.dtype.kind in "iuf" and bool(np.all(np.isfinite(arr)))
    if not ok:
        want = "x".join("N" if s == -1 else str(s) for s in shape)
        got = f"{arr.dtype} array of shape {arr.shape}" if arr is not None else type(value).__name__
        raise FastposeError(f"NOCS ground-truth file {str(path)!r}: {key} must be a {want} "
                            f"{'integer' if kind == 'i' else 'number'} array, got {got}")
    return arr


def read_ground_truth(path: str | Path) -> GroundTruth:
    """The ground truth of one NOCS file (see the module docstring), checked key by key."""
    path = Path(path)
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise FastposeError(f"NOCS ground-truth file {str(path)!r} holds a {type(data).__name__}, not a dict")
    for key in ("gt_class_ids", "gt_RTs", "gt_scales"):
        if key not in data:
            raise FastposeError(f"NOCS ground-truth file {str(path)!r} has no {key!r}")
    cls = _array(data["gt_class_ids"], (-1,), "gt_class_ids", path, "i").astype(np.int64)
    n = len(cls)
    rts = _array(data["gt_RTs"], (n, 4, 4), "gt_RTs", path).astype(np.float64)
    scales = _array(data["gt_scales"], (n, 3), "gt_scales", path).astype(np.float64)
    handle_key = next((k for k in ("gt_handle_visibility", "handle_visibility") if k in data), None)
    handle = np.ones(n, bool) if handle_key is None else \
        _array(data[handle_key], (n,), handle_key, path, "i").astype(bool)
    if n and ((cls < 1) | (cls > 6)).any():
        raise FastposeError(f"NOCS ground-truth file {str(path)!r}: gt_class_ids must be 1..6, got {cls.tolist()}")
    sR = rts[:, :3, :3]
    det = np.linalg.det(sR) if n else np.zeros(0)
    if n and (det <= 0).any():
        raise FastposeError(f"NOCS ground-truth file {str(path)!r}: gt_RTs[:, :3, :3] must have a positive "
                            f"determinant (a scaled rotation), got {det.tolist()}")
    s = np.cbrt(det)
    R = sR / s[:, None, None] if n else np.zeros((0, 3, 3))
    if n and np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max() > 1e-3:
        raise FastposeError(f"NOCS ground-truth file {str(path)!r}: gt_RTs[:, :3, :3] is not a scaled rotation")
    return GroundTruth(cls, R, rts[:, :3, 3].copy(), scales * s[:, None], handle)


def ground_truth_path(root: str | Path, split: str, stem: str | Path) -> Path:
    """Where NOCS keeps the ground truth of image ``stem`` (``.../<split>/<scene>/<id>``):
    ``<root>/gts/<split>/results_<split>_<scene>_<id>.pkl``."""
    stem = Path(stem)
    return Path(root) / "gts" / split / f"results_{split}_{stem.parent.name}_{stem.name}.pkl"


def write_ground_truth(path: str | Path, class_ids, rotations, translations, sizes, handle_visible=None,
                       bboxes=None, image_path: str = "", image_id: int = 0) -> Path:
    """Write one image's ground truth in the authors' format (``pickle.dump`` of the dict of the module
    docstring): ``gt_RTs`` float64 with the diagonal ``s = |size|`` folded in, ``gt_scales`` float32
    ``size / s``, ``gt_class_ids`` and ``gt_handle_visibility`` int64, ``gt_bboxes`` int32."""
    cls = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    n = len(cls)
    R = np.asarray(rotations, dtype=np.float64).reshape(n, 3, 3)
    t = np.asarray(translations, dtype=np.float64).reshape(n, 3)
    size = np.asarray(sizes, dtype=np.float64).reshape(n, 3)
    s = np.linalg.norm(size, axis=1)
    rts = np.zeros((n, 4, 4))
    rts[:, :3, :3] = s[:, None, None] * R
    rts[:, :3, 3] = t
    rts[:, 3, 3] = 1
    result = {
        "image_id": image_id,
        "image_path": image_path,
        "gt_class_ids": cls,
        "gt_bboxes": np.zeros((n, 4), np.int32) if bboxes is None else np.asarray(bboxes, dtype=np.int32).reshape(n, 4),
        "gt_RTs": rts,
        "gt_scales": (size / s[:, None]).astype(np.float32),
        "gt_handle_visibility": np.ones(n, np.int64) if handle_visible is None else
        np.asarray(handle_visible).astype(np.int64).reshape(n),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(result, f)
    return path


def mask_bboxes(instance_mask: np.ndarray, ids: list[int]) -> np.ndarray:
    """(N, 4) int32 boxes ``(y1, x1, y2, x2)`` (exclusive ends) of the pixels of each id, as the authors'
    ``utils.extract_bboxes`` computes ``gt_bboxes``; zeros for an id without pixels."""
    out = np.zeros((len(ids), 4), np.int32)
    for j, i in enumerate(ids):
        v, u = np.nonzero(instance_mask == i)
        if len(u):
            out[j] = (v.min(), u.min(), v.max() + 1, u.max() + 1)
    return out
