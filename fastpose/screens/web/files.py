"""The files a run page shows, found only through what the journal says of the run: the pose panel (the newest
``val/poses`` image in the TensorBoard event files under the run's ``run_dir``) and each evaluation's PR-curve
PNG (``evaluations.plot_path``). A URL carries only numeric ids; no part of it reaches the file system.

Event files are TFRecord streams (a little-endian uint64 length, its CRC, the record, its CRC); a record that
mentions the tag is parsed as a TensorBoard ``Event`` (``tensorboard.compat.proto``, torch-free). Results are
cached per file (path, size, modification time), so a page of a running run re-reads only what changed.
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

POSE_TAG = "val/poses"
MAX_IMAGE_BYTES = 32 * 1024 * 1024  # a PR-curve PNG or a panel larger than this is not served
MAX_EVENT_FILES = 64
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_cache: dict[tuple[str, int, int], tuple[int, float, bytes] | None] = {}
_cache_lock = threading.Lock()


def event_files(run_dir: str | None) -> list[Path]:
    """The TensorBoard event files of a run (``<run_dir>/tensorboard/**/events.out.tfevents.*``), no links
    followed; [] when the run directory is not on this machine."""
    if not run_dir:
        return []
    root = Path(run_dir) / "tensorboard"
    found: list[Path] = []
    try:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.startswith("events.out.tfevents.") and path.is_file() and not path.is_symlink():
                    found.append(path)
            if len(found) >= MAX_EVENT_FILES:
                break
    except OSError:
        return []
    return sorted(found)[:MAX_EVENT_FILES]


def pose_panel(run_dir: str | None, tag: str = POSE_TAG) -> bytes | None:
    """The newest image logged under ``tag`` (highest step, then latest) in the run's event files, as the PNG
    bytes TensorBoard holds; None when there is none."""
    best: tuple[int, float, bytes] | None = None
    for path in event_files(run_dir):
        found = _newest_in_file(path, tag)
        if found is not None and (best is None or found[:2] > best[:2]):
            best = found
    return None if best is None else best[2]


def _newest_in_file(path: Path, tag: str) -> tuple[int, float, bytes] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    found = None
    needle = tag.encode()
    try:
        with open(path, "rb") as f:
            for record in _records(f):
                if needle not in record:
                    continue
                image = _image_of(record, tag)
                if image is not None and (found is None or image[:2] >= found[:2]):
                    found = image
    except OSError:
        return None
    with _cache_lock:
        for old in [k for k in _cache if k[0] == key[0]]:
            del _cache[old]
        _cache[key] = found
    return found


def _records(f):  # noqa: ANN001, ANN202 - a binary file -> iterator of record bytes
    """The records of a TFRecord stream; a record cut short (a file still being written) ends it."""
    while True:
        head = f.read(12)
        if len(head) < 12:
            return
        (length,) = struct.unpack("<Q", head[:8])
        if length > MAX_IMAGE_BYTES * 2:
            return
        data = f.read(length)
        if len(data) < length or len(f.read(4)) < 4:
            return
        yield data


def _image_of(record: bytes, tag: str) -> tuple[int, float, bytes] | None:
    from tensorboard.compat.proto import event_pb2

    try:
        event = event_pb2.Event.FromString(record)
    except Exception:  # noqa: BLE001 - a damaged record is skipped, never shown
        return None
    for value in event.summary.value:
        if value.tag == tag and value.HasField("image"):
            data = value.image.encoded_image_string
            if data.startswith(PNG_MAGIC) and len(data) <= MAX_IMAGE_BYTES:
                return int(event.step), float(event.wall_time), bytes(data)
    return None


def has_png(path: str | None) -> bool:
    """Is there a regular file (no link) at ``path``? The page links it; ``read_png`` checks it is a PNG."""
    if not path:
        return False
    try:
        import stat

        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_png(path: str | None) -> bytes | None:
    """The PNG file at ``path`` (a path the journal holds): a regular file of at most ``MAX_IMAGE_BYTES`` that
    starts as a PNG does, else None. Links are not followed."""
    if not path:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        import stat

        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_IMAGE_BYTES:
            return None
        with os.fdopen(fd, "rb") as f:
            fd = -1
            data = f.read(MAX_IMAGE_BYTES + 1)
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    return data if data.startswith(PNG_MAGIC) and len(data) <= MAX_IMAGE_BYTES else None
