"""The mechanisms behind "no traceback from numbers and files a user hands in", tested at their edges:
integer ranges (config.INT_RANGES), the reader of user files (fastpose.files), TOML nesting, predict's
intrinsics bounds, image pixel limit, overlay size and names. The CLI cases are in
test_reliability_bad_input.py (one table, real subprocesses)."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from fastpose.config import INT_RANGES, TOML_MAX_DEPTH, ConfigError, RunConfig, build_config, load_toml
from fastpose.errors import FastposeError
from fastpose.files import open_user_file, read_user_file
from image_files import solid_png


# ----------------------------------------------------------------------------------- integer ranges
def test_every_integer_field_of_the_config_has_a_range() -> None:
    """A new integer key cannot skip the table: every int field of every section is listed."""
    config = RunConfig()
    ints = {f"{section.name}.{f.name}" for section in dataclasses.fields(config)
            if dataclasses.is_dataclass(getattr(config, section.name))
            for f in dataclasses.fields(getattr(config, section.name)) if "int" in f.type.split(" | ")}
    assert ints == set(INT_RANGES)
    for key, (_, low, high) in INT_RANGES.items():
        assert low <= RunConfig().flat()[key] <= high, key  # the defaults are inside


@pytest.mark.parametrize("key", sorted(INT_RANGES))
def test_both_ends_of_each_range_are_accepted_and_one_step_beyond_refused(key: str) -> None:
    option, low, high = INT_RANGES[key]
    ends = [low, high]
    refused = f"^{option} must be an integer from {low} to {high} \\({key}\\)"
    if key == "data.image_size":  # each side of a square or a rectangle (check_image_size)
        ends = [low, high - high % 32, f"{low}x{high}", f"{high}x{low}"]
        refused = f"^{option} sides must be from {low} to {high} pixels \\({key}\\)"
    for value in ends:
        assert build_config(None, {key: value}, require_name=False).flat()[key] == value
    beyond = [low - 1, high + 1, -2**63, 2**53]
    if key == "data.image_size":
        beyond += [f"{low}x{high + 32}", f"{high + 32}x{low}", f"{low}x{low - 1}", "999999999x64"]
    for value in beyond:
        with pytest.raises(ConfigError, match=refused):
            build_config(None, {key: value}, require_name=False)


def test_a_stored_config_out_of_range_is_refused_by_the_same_check() -> None:
    """``train --from`` and resume read stored configs; the range is checked there too."""
    with pytest.raises(ConfigError, match="train.seed"):
        build_config(None, {}, base={"name": "OLD", "train": {"seed": -1}})
    with pytest.raises(ConfigError, match="data.seed"):
        RunConfig.from_saved({"name": "OLD", "data": {"seed": 2**32}}).validate()


# ----------------------------------------------------------------------------------- reading user files
def test_a_regular_file_is_read_and_one_over_the_limit_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_bytes(b"x" * 100)
    assert read_user_file(f, "config file", 100) == b"x" * 100
    with pytest.raises(FastposeError, match=r"cannot read config file '.*c.toml': it is 100 bytes, over the limit of 99 bytes"):
        read_user_file(f, "config file", 99)
    link = tmp_path / "link.toml"
    link.symlink_to(f)
    assert read_user_file(link, "config file", 100) == b"x" * 100  # a link to a regular file is that file


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_devices_are_refused(device: str) -> None:
    with pytest.raises(FastposeError, match=f"cannot read image '{device}': it is a device"):
        read_user_file(device, "image", 1 << 20)


def test_a_fifo_without_a_writer_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "f.toml"
    os.mkfifo(fifo)
    with pytest.raises(FastposeError, match="it is a FIFO"):  # at once: a blocking open would hang the test
        read_user_file(fifo, "config file", 1 << 20)


def test_a_fifo_with_a_writer_is_refused_too(tmp_path: Path) -> None:
    """Even when a writer keeps feeding it (a file that never ends)."""
    fifo = tmp_path / "f.toml"
    os.mkfifo(fifo)
    stop = threading.Event()

    def feed() -> None:
        fd = os.open(fifo, os.O_RDWR)  # O_RDWR never blocks on a FIFO
        try:
            while not stop.wait(0.01):
                try:
                    os.write(fd, b"x = 1\n")
                except BlockingIOError:
                    pass
        finally:
            os.close(fd)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        with pytest.raises(FastposeError, match="FIFO"):
            read_user_file(fifo, "config file", 1 << 20)
    finally:
        stop.set()
        thread.join(5)


def test_sockets_directories_and_missing_files_are_refused(tmp_path: Path) -> None:
    sock_path = tmp_path / "s.toml"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        with pytest.raises(FastposeError, match="s.toml"):
            read_user_file(sock_path, "config file", 1 << 20)
    finally:
        sock.close()
    with pytest.raises(FastposeError, match="it is a directory"):
        read_user_file(tmp_path, "config file", 1 << 20)
    with pytest.raises(FastposeError, match="No such file"):
        read_user_file(tmp_path / "nope", "config file", 1 << 20)
    with pytest.raises(FastposeError, match="NUL"):
        read_user_file("a\x00b", "config file", 1 << 20)


def test_the_descriptor_is_closed_after_a_refusal(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(FastposeError):
            read_user_file("/dev/zero", "image", 10)
        with pytest.raises(FastposeError):
            read_user_file(tmp_path, "image", 10)
    assert len(os.listdir("/proc/self/fd")) == before
    with open_user_file(__file__, "test", 1 << 20) as f:
        assert f.read(3) == b'"""'


# ----------------------------------------------------------------------------------- TOML nesting
def _nested(depth: int, kind: str) -> str:
    """A TOML file whose data nest ``depth`` levels deep, the root table counted."""
    inner = depth - 1
    if kind == "arrays":
        return "x = " + "[" * inner + "]" * inner + "\n"
    if kind == "inline":
        return "x = " + "{a = " * (inner - 1) + "{}" + "}" * (inner - 1) + "\n"
    return "a." * inner + "b = 1\n"  # dotted keys: tables, no recursion in the parser


@pytest.mark.parametrize("kind", ["arrays", "inline", "dotted"])
def test_toml_nesting_up_to_the_limit_reads_and_beyond_is_refused(tmp_path: Path, kind: str) -> None:
    f = tmp_path / "n.toml"
    f.write_text(_nested(TOML_MAX_DEPTH, kind))
    load_toml(f)
    for depth in (TOML_MAX_DEPTH + 1, 100, 3000, 100_000):
        f.write_text(_nested(depth, kind))
        with pytest.raises(ConfigError, match=f"config file '.*n.toml' nests tables or arrays more than {TOML_MAX_DEPTH}"):
            load_toml(f)


def test_the_example_sweep_files_fit_the_limits() -> None:
    from fastpose.studies.spec import load_sweep

    for path in sorted((Path(__file__).parent.parent / "studies").glob("*.toml")):
        load_sweep(path)


# ----------------------------------------------------------------------------------- predict: intrinsics
def test_intrinsics_at_the_bounds_give_finite_invertible_network_intrinsics() -> None:
    import torch
    from PIL import Image

    from fastpose.training.predict import CENTRE_MARGIN, FOCAL_RANGE, camera, check_intrinsics, prepare

    W, H = 80, 48
    image = Image.new("RGB", (W, H))
    lo, hi = FOCAL_RANGE[0] * W, FOCAL_RANGE[1] * W
    m = CENTRE_MARGIN
    for values in [(lo, lo, -m * W, -m * H), (hi, hi, (m + 1) * W, (m + 1) * H), (lo, hi, 0, 0), (hi, lo, 40, 24)]:
        check_intrinsics(values, W, H, "x.png")
        for size in (32, 512):
            K = camera(W, H, values)
            _, K_net, _ = prepare(image, (size, size), K)
            assert torch.isfinite(K_net).all() and np.isfinite(K).all()
            assert torch.linalg.matrix_rank(K_net.double()) == 3
    for values in [(lo * 0.99, lo, 0, 0), (hi, hi * 1.01, 0, 0), (50, 50, -m * W - 1, 0), (50, 50, 0, (m + 1) * H + 1),
                   (1e308, 1e308, 1, 1), (1e-308, 1e-308, 1, 1), (50, 50, 1e308, 1e308)]:
        with pytest.raises(FastposeError, match="--intrinsics"):
            check_intrinsics(values, W, H, "x.png")


# ----------------------------------------------------------------------------------- predict: images
def test_the_pixel_limit_is_read_from_the_header_before_decoding(tmp_path: Path) -> None:
    from PIL import Image

    from fastpose.training.predict import read_image

    pillows_own = Image.MAX_IMAGE_PIXELS
    big = solid_png(tmp_path / "big.png", 20000, 20000)  # 1.2 GB as RGB if it were decoded
    with pytest.raises(FastposeError, match=r"20000x20000 = 400.0 megapixels, over the limit of 100 .*--max-pixels 400000000"):
        read_image(big, 100_000_000)  # from the header: the pixels are never decoded
    small = solid_png(tmp_path / "s.png", 30, 20, (1, 2, 3))
    assert read_image(small, 600).size == (30, 20)
    with pytest.raises(FastposeError, match="over the limit"):
        read_image(small, 599)
    assert Image.MAX_IMAGE_PIXELS == pillows_own  # lifted while reading only


def test_a_large_photo_is_reduced_before_the_float_copy_and_gives_the_same_input(tmp_path: Path) -> None:
    """An image over REDUCE_TO x 2 pixels a side is box-reduced first; the network input stays what the
    direct antialiased letterbox gives, within a few grey levels, and so do the intrinsics."""
    import torch
    from PIL import Image

    from fastpose.pose.camera import fit_frame
    from fastpose.pose.data.synthetic import normalize_image
    from fastpose.training.predict import camera, prepare

    rng = np.random.default_rng(0)
    low = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)  # smooth content: an upscaled random image
    image = Image.fromarray(low).resize((4403, 4201), Image.Resampling.BILINEAR)  # not a multiple of the factor
    K = camera(4403, 4201, None)
    x, K_net, _ = prepare(image, (64, 64), K)
    whole = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    direct = fit_frame((4201, 4403), (64, 64), "letterbox")
    expected = direct.resample(normalize_image(whole), "bilinear")
    assert (x - expected).abs().max() < 0.1  # ~0.02 in [0, 1] units
    assert np.allclose(K_net.double().numpy(), direct.intrinsics(K), rtol=2e-3)


def test_overlays_are_bounded_whatever_the_image_size() -> None:
    from fastpose.training.predict import (
        DRAW_MAX_PIXELS, OVERLAY_MAX_PIXELS, OVERLAY_MIN_SIDE, SUPERSAMPLE, overlay_size,
    )

    assert overlay_size(64, 48) == (512, 384, SUPERSAMPLE)  # a whole multiple, up to 512 px
    assert overlay_size(640, 480) == (640, 480, SUPERSAMPLE) and overlay_size(1920, 1080) == (1920, 1080, 4)
    for W, H in [(640, 480), (4000, 3000), (10000, 10000), (20000, 20000), (100_000, 10), (1, 1), (31623, 31623),
                 (20, 20), (500, 3), (511, 511)]:
        w, h, s = overlay_size(W, H)
        assert w * h <= OVERLAY_MAX_PIXELS * 1.001 and (w * s) * (h * s) <= DRAW_MAX_PIXELS * 1.001
        assert 1 <= s <= SUPERSAMPLE and w <= max(W, 2 * OVERLAY_MIN_SIDE) and h <= max(H, 2 * OVERLAY_MIN_SIDE)
        assert max(w, h) >= min(OVERLAY_MIN_SIDE, max(W, H))  # small images are enlarged to 512 px
        assert abs(w / h - W / H) <= max(W / H, H / W) * 0.01 + 1 / min(w, h)  # the aspect ratio is kept


def test_objects_projecting_far_outside_or_to_infinity_are_drawn_clipped(tmp_path: Path) -> None:
    from PIL import Image

    from fastpose.training.predict import draw_overlay

    image = Image.new("RGB", (64, 48))
    K = np.array([[64.0, 0, 32], [0, 64.0, 24], [0, 0, 1]])
    near = {"class": "camera", "score": 0.5, "quaternion": [0, 0, 0, 1], "translation": [0, 0, 0.0011],
            "size": [5.0, 0.0001, 0.0001]}  # corners project 1e5 image widths away
    huge_K = np.array([[1e15, 0, 32], [0, 1e15, 24], [0, 0, 1]])
    box = {"class": "mug", "score": 0.9, "quaternion": [0, 0, 0, 1], "translation": [0.001, 0, 1.0],
           "size": [0.5, 0.25, 0.01]}
    assert draw_overlay(image, [near, box], K, tmp_path / "a.png") == (512, 384)
    assert draw_overlay(image, [box], huge_K, tmp_path / "b.png") == (512, 384)
    nan_obj = dict(box, translation=[float("nan"), 0, 1.0])
    draw_overlay(image, [nan_obj], K, tmp_path / "c.png")
    drawn = np.asarray(Image.open(tmp_path / "a.png"))
    assert drawn.any()  # the clipped lines are there


def test_a_huge_image_gets_a_bounded_overlay_quickly(tmp_path: Path) -> None:
    import resource

    from fastpose.training.predict import OVERLAY_MAX_PIXELS, draw_overlay, read_image

    image = read_image(solid_png(tmp_path / "wide.png", 12000, 3000), 100_000_000)  # 36 megapixels
    K = np.array([[12000.0, 0, 6000], [0, 12000.0, 1500], [0, 0, 1]])
    box = {"class": "mug", "score": 0.9, "quaternion": [0, 0, 0, 1], "translation": [0, 0, 1.0],
           "size": [0.2, 0.1, 0.1]}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    w, h = draw_overlay(image, [box], K, tmp_path / "o.png")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert w * h <= OVERLAY_MAX_PIXELS and abs(w / h - 4) < 0.01
    from PIL import Image

    assert Image.open(tmp_path / "o.png").size == (w, h)
    assert grown_mb < 600, grown_mb  # drawn at 4x, as before, this canvas alone would be 1.7 GB


def test_overlay_names_never_repeat_within_a_command(tmp_path: Path) -> None:
    from fastpose.training.predict import overlay_paths

    names = [p.name for p in overlay_paths([Path("a/x.png"), Path("b/x.png"), Path("x.jpg"), Path("c/X.png"),
                                            Path("x-poses-2.png"), Path("y.png")], tmp_path)]
    assert names == ["x-poses.png", "x-poses-2.png", "x-poses-3.png", "X-poses-4.png", "x-poses-2-poses.png",
                     "y-poses.png"]
    assert len({n.casefold() for n in names}) == len(names)


def test_an_overlay_replaces_a_fifo_instead_of_writing_into_it(tmp_path: Path) -> None:
    from PIL import Image

    from fastpose.training.predict import draw_overlay

    target = tmp_path / "x-poses.png"
    os.mkfifo(target)
    draw_overlay(Image.new("RGB", (16, 16)), [], np.eye(3), target)  # would block forever writing into it
    assert target.is_file() and Image.open(target).size == (512, 512)  # 16 px enlarged to 512
    assert [p.name for p in tmp_path.iterdir()] == ["x-poses.png"]  # no temporary file left
