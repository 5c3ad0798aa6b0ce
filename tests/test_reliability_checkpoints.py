"""Checkpoints are data, never code: every command that reads a ``.ckpt`` or weights file goes through
``fastpose.pose.checkpoint.load_torch_file`` (``weights_only=True``).

A hostile file (a pickle whose ``__reduce__`` calls a shell command) is refused with one line naming the file,
exit 2, before anything is written, through every door: ``eval`` and ``predict`` (``--checkpoint FILE``, and a
run's own ``best``/``last`` replaced), ``resume`` (its ``last.ckpt``), ``train --weights`` and ``train --from``
(which reads the run's config from the journal, never its checkpoint). The marker file the payload would create
never appears. A checkpoint written by an earlier fastpose still loads, evaluates and resumes.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pickle
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import torch

from fastpose.errors import FastposeError
from fastpose.pose.checkpoint import CheckpointRefused, load_torch_file
from test_training import fastpose

FIXTURE = Path(__file__).parent / "checkpoint_fixtures" / "fastpose-0.1.0-1f67690.ckpt.gz"
# The options the fixture was trained with (its README): a run trained with them has the fixture's network.
FIXTURE_OPTS = ["--epochs", "1", "--train-size", "4", "--val-size", "4", "--batch-size", "2", "--image-size", "32",
                "--decoder-channels", "16", "--no-progress", "--log-images", "0", "--accelerator", "cpu"]


# ----------------------------------------------------------------------------- hostile files
class _Call:
    """Pickles as a call of ``func(*args)``: what unpickling with ``weights_only=False`` would execute."""

    def __init__(self, func, *args) -> None:  # noqa: ANN001
        self.func, self.args = func, args

    def __reduce__(self):  # noqa: ANN204
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, object]:
    """Ways a pickle can run code, each creating ``marker`` when loaded unrestricted."""
    shell = f"touch {marker}"
    return {
        "os.system": _Call(os.system, shell),
        "subprocess.call": _Call(subprocess.call, ["touch", str(marker)]),
        "builtins.eval": _Call(eval, f"open({str(marker)!r}, 'w').close()"),
        "builtins.exec": _Call(exec, f"import os; os.system({shell!r})"),
        "pathlib.Path.touch": _Call(Path.touch, marker),
    }


def hostile_checkpoint(path: Path, marker: Path, kind: str = "os.system", fmt: str = "zip") -> Path:
    """A file that looks like a Lightning checkpoint of fastpose, with the payload deep inside its state."""
    payload = _payloads(marker)[kind]
    ckpt = {"epoch": 0, "global_step": 1, "hyper_parameters": {"name": "X"},
            "state_dict": {"model.w": torch.zeros(1)}, "loops": {"fit_loop": {"x": [payload]}}}
    if fmt == "zip":
        torch.save(ckpt, path)
    else:  # the legacy format: a bare pickle stream
        path.write_bytes(pickle.dumps(ckpt, protocol=2))
    return path


def test_a_hostile_file_is_hostile(tmp_path: Path) -> None:
    """The test's payloads really run code when loaded the old way (so the tests below can fail)."""
    for kind in _payloads(tmp_path):
        marker = tmp_path / f"ran-{kind}"
        path = hostile_checkpoint(tmp_path / f"{kind}.ckpt", marker, kind)
        torch.load(path, weights_only=False)
        assert marker.exists(), kind


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("kind", list(_payloads(Path("x"))))
def test_load_torch_file_refuses_every_payload(tmp_path: Path, kind: str, fmt: str) -> None:
    marker = tmp_path / "ran"
    path = hostile_checkpoint(tmp_path / "evil.ckpt", marker, kind, fmt)
    with pytest.raises(CheckpointRefused) as err:
        load_torch_file(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "refused checkpoint" in message
    assert not marker.exists()


def test_load_torch_file_broken_and_special_files(tmp_path: Path) -> None:
    cases = {"empty": b"", "text": b"hello", "truncated": None}
    buf = io.BytesIO()
    torch.save({"a": torch.ones(3)}, buf)
    cases["truncated"] = buf.getvalue()[: len(buf.getvalue()) // 2]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in [*(tmp_path / n for n in cases), fifo, tmp_path, Path("/dev/zero"), tmp_path / "missing"]:
        with pytest.raises(FastposeError) as err:
            load_torch_file(path)
        assert not isinstance(err.value, CheckpointRefused) and "\n" not in str(err.value), path
        assert str(path) in str(err.value)


def test_the_earlier_fastpose_checkpoint_loads_safely(tmp_path: Path) -> None:
    path = _unzip_fixture(tmp_path)
    ckpt = load_torch_file(path)
    assert ckpt["hyper_parameters"]["name"] == "OLD" and ckpt["epoch"] == 0
    assert all(isinstance(v, torch.Tensor) for v in ckpt["state_dict"].values())


def _unzip_fixture(folder: Path) -> Path:
    path = folder / "old.ckpt"
    with gzip.open(FIXTURE, "rb") as src, path.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


# ----------------------------------------------------------------------------- through the CLI
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A journal with one tiny run (RUN) whose network is the fixture's."""
    home = tmp_path_factory.mktemp("ckpthome")
    proc = fastpose(home, "train", "--name", "RUN", *FIXTURE_OPTS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return home


def _state(home: Path) -> tuple:
    """Everything a command could have written: journal rows per table, and the files under the home."""
    with sqlite3.connect(home / "fastpose.db") as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        runs = conn.execute("SELECT id, status FROM runs ORDER BY id").fetchall()
    files = sorted(str(p.relative_to(home)) for p in home.rglob("*") if "fastpose.db" not in p.name)
    return counts, runs, files


def _refused(proc: subprocess.CompletedProcess, path: Path) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: refused") and str(path) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def _run_dir(home: Path, name: str = "RUN") -> Path:
    return next((home / "runs").glob(f"*/*-{name}-*"))


@contextlib.contextmanager
def swapped(target: Path, replacement: Path):  # noqa: ANN201
    """``target`` replaced by a copy of ``replacement`` for the block (the run's own file restored after)."""
    saved = target.with_name(target.name + ".saved")
    os.replace(target, saved)
    shutil.copyfile(replacement, target)
    try:
        yield target
    finally:
        os.replace(saved, target)


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "img.png"
    Image.new("RGB", (40, 30), (90, 120, 60)).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("door", ["eval --checkpoint FILE", "predict --checkpoint FILE", "eval (best replaced)",
                                  "predict (best replaced)", "eval --checkpoint last (replaced)", "resume (last.ckpt)",
                                  "train --weights FILE"])
def test_a_hostile_checkpoint_never_runs_through_any_command(trained: Path, tmp_path: Path, image: Path,
                                                            door: str) -> None:
    marker = tmp_path / "MARKER"
    evil = hostile_checkpoint(tmp_path / "evil.ckpt", marker)
    ckpts = _run_dir(trained) / "checkpoints"
    best = next(ckpts.glob("best-*.ckpt"))
    out = tmp_path / "out"
    before = _state(trained)
    with contextlib.ExitStack() as stack:
        if door == "eval --checkpoint FILE":
            proc, shown = fastpose(trained, "eval", "RUN", "--checkpoint", str(evil)), evil
        elif door == "predict --checkpoint FILE":
            proc, shown = fastpose(trained, "predict", "RUN", str(image), "--checkpoint", str(evil), "--out", str(out)), evil
        elif door == "eval (best replaced)":
            shown = stack.enter_context(swapped(best, evil))
            proc = fastpose(trained, "eval", "RUN")
        elif door == "predict (best replaced)":
            shown = stack.enter_context(swapped(best, evil))
            proc = fastpose(trained, "predict", "RUN", str(image), "--out", str(out))
        elif door == "eval --checkpoint last (replaced)":
            shown = stack.enter_context(swapped(ckpts / "last.ckpt", evil))
            proc = fastpose(trained, "eval", "RUN", "--checkpoint", "last")
        elif door == "resume (last.ckpt)":
            shown = stack.enter_context(swapped(ckpts / "last.ckpt", evil))
            proc = fastpose(trained, "resume", "RUN", "--epochs", "2")
        else:
            proc, shown = fastpose(trained, "train", "--name", "W", "--weights", str(evil), *FIXTURE_OPTS), evil
    _refused(proc, shown)
    assert not marker.exists()
    assert _state(trained) == before  # no run row, evaluation, run directory or overlay
    assert not out.exists()


@pytest.mark.slow
def test_train_from_a_run_with_hostile_checkpoints_reads_only_its_config(trained: Path, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    evil = hostile_checkpoint(tmp_path / "evil.ckpt", marker)
    ckpts = _run_dir(trained) / "checkpoints"
    with swapped(ckpts / "last.ckpt", evil), swapped(next(ckpts.glob("best-*.ckpt")), evil):
        proc = fastpose(trained, "train", "--from", "RUN", "--name", "FROM", "--print-config")
        assert proc.returncode == 0 and 'name = "FROM"' in proc.stdout, proc.stderr
        proc = fastpose(trained, "train", "--from", "RUN", "--name", "FROM", "--epochs", "1")
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert not marker.exists()


@pytest.mark.slow
def test_checkpoints_that_do_not_fit_their_config_are_one_line(trained: Path, tmp_path: Path, image: Path) -> None:
    """A stored config the network does not match, or that cannot be built, or no config at all."""
    good = load_torch_file(_unzip_fixture(tmp_path))
    wrong_arch = {**good, "hyper_parameters": {**good["hyper_parameters"],
                                               "model": {**good["hyper_parameters"]["model"], "backbone": "resnet34"}}}
    wrong_rot = {**good, "hyper_parameters": {**good["hyper_parameters"],
                                              "model": {**good["hyper_parameters"]["model"], "rotation": "9d"},
                                              "loss": {**good["hyper_parameters"]["loss"], "name": "chordal"}}}
    no_config = {k: v for k, v in good.items() if k != "hyper_parameters"}
    bad_batch = {**good, "hyper_parameters": {**good["hyper_parameters"],
                                              "train": {**good["hyper_parameters"]["train"], "batch_size": 0}}}
    bad_image = {**good, "hyper_parameters": {**good["hyper_parameters"],
                                              "data": {**good["hyper_parameters"]["data"], "image_size": 0}}}
    huge_image = {**good, "hyper_parameters": {**good["hyper_parameters"],
                                               "data": {**good["hyper_parameters"]["data"], "image_size": 65536}}}
    unknown_key = {**good, "hyper_parameters": {**good["hyper_parameters"], "bogus": 1}}
    not_tensors = {**good, "state_dict": {k: 1.0 for k in good["state_dict"]}}
    cases = {"does not fit": [wrong_arch, wrong_rot, not_tensors],
             "not a fastpose checkpoint": [no_config, torch.zeros(2), [1, 2]],
             "unusable config": [bad_batch, bad_image, huge_image, unknown_key]}
    before = _state(trained)
    for expected, contents in cases.items():
        for i, content in enumerate(contents):
            path = tmp_path / f"{expected.replace(' ', '_')}-{i}.ckpt"
            torch.save(content, path)
            for argv in (["eval", "RUN", "--checkpoint", str(path)],
                         ["predict", "RUN", str(image), "--checkpoint", str(path), "--out", str(tmp_path / "o")]):
                proc = fastpose(trained, *argv)
                lines = proc.stderr.strip().splitlines()
                assert proc.returncode == 2 and len(lines) == 1, (argv, proc.stderr[-2000:])
                assert expected in lines[0] and str(path) in lines[0], (argv, lines)
    assert _state(trained) == before


@pytest.mark.slow
def test_the_earlier_fastpose_checkpoint_evaluates_and_resumes(trained: Path, tmp_path: Path) -> None:
    old = _unzip_fixture(tmp_path)
    proc = fastpose(trained, "eval", "RUN", "--checkpoint", str(old), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with swapped(_run_dir(trained) / "checkpoints" / "last.ckpt", old):
        proc = fastpose(trained, "resume", "RUN", "--epochs", "2", "--name", "RESUMED_OLD")
        assert proc.returncode == 0, proc.stderr[-2000:]
    with sqlite3.connect(trained / "fastpose.db") as conn:
        status, parent = conn.execute("SELECT status, parent_id FROM runs WHERE name='RESUMED_OLD'").fetchone()
    assert status == "completed" and parent is not None
