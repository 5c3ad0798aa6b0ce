"""Bad input, one table of cases: each gives one clear line, exit code 2, and leaves journal and disk unchanged.

Every case runs the real CLI in a subprocess against a journal that already holds two runs (one named
`TWIN_A`, one `TWIN_B`, so the prefix `2` is ambiguous), and compares row counts and the file tree of the
journal home before and after.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastpose.journal.git import capture_git
from fastpose.journal.store import JournalStore

TIMEOUT = 300


def _tree(root: Path) -> dict[str, str]:
    """Path -> sha256 of every file under root, except SQLite's own WAL/shm side files and the writer lock."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm", ".lock")):
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("badinput")
    home = root / "home"
    env = dict(os.environ, FASTPOSE_HOME=str(home), COLUMNS="200")
    env.pop("FASTPOSE_JOURNAL_URL", None)
    store = JournalStore.open(url=f"sqlite:///{home / 'fastpose.db'}")
    for name in ("TWIN_A", "TWIN_B"):
        run = store.start_run(
            name=name, label=f"26-11-28/22-57-{name}-SYNTH-resnet18-scratch", config={"name": name},
            run_dir=str(home / "runs" / name), command="test", git=capture_git(root),
            versions={"python": "3"},
        )
        store.finish(run.id, status="completed")
    store.close()

    # A weights file for another architecture (resnet50 keys) while the default backbone is resnet18.
    import torch

    from fastpose.pose.backbones import build_backbone

    wrong = root / "resnet50-imagenet.pth"
    torch.save(build_backbone("resnet50").state_dict(), wrong)
    toml = root / "bad.toml"
    toml.write_text('[train]\nepochs = 3\nlr = = 0.1\n')
    unknown_key = root / "unknown.toml"
    unknown_key.write_text('[train]\nepoch = 3\n')
    return {"home": home, "env": env, "root": root, "wrong_weights": wrong, "toml": toml, "unknown": unknown_key}


CASES = [
    # (id, argv, words the one-line message must contain)
    ("name ../x", ["train", "--name", "../x"], ["invalid run name"]),
    ("name a/b", ["train", "--name", "a/b"], ["invalid run name"]),
    ("name empty", ["train", "--name", ""], ["invalid run name"]),
    ("name spaces", ["train", "--name", "my run"], ["invalid run name"]),
    ("name 101 chars", ["train", "--name", "A" * 101], ["invalid run name"]),
    ("name quotes", ["train", "--name", "x'; DROP TABLE runs;--"], ["invalid run name"]),
    ("unknown run", ["journal", "show", "NOPE_NOT_HERE"], ["NOPE_NOT_HERE"]),
    ("ambiguous run", ["journal", "show", "TWIN"], ["TWIN"]),
    ("unknown run resume", ["resume", "NOPE_NOT_HERE"], ["NOPE_NOT_HERE"]),
    ("unknown run compare", ["compare", "TWIN_A", "NOPE_NOT_HERE"], ["NOPE_NOT_HERE"]),
    ("unknown loss", ["train", "--name", "X", "--loss", "l1"], ["unknown loss", "qloss"]),
    ("unknown backbone", ["train", "--name", "X", "--backbone", "vgg16"], ["unknown backbone", "resnet18"]),
    ("unknown dataset", ["train", "--name", "X", "--dataset", "coco"], ["unknown dataset", "synthetic"]),
    ("missing data root", ["train", "--name", "X", "--dataset", "nocs"], ["--data-root"]),
    ("data root not a dir", ["train", "--name", "X", "--dataset", "nocs", "--data-root", "/nonexistent/nocs"],
     ["/nonexistent/nocs"]),
    ("malformed TOML", ["train", "--name", "X", "--config", "{toml}"], ["malformed TOML", "line 3"]),
    ("unknown TOML key", ["train", "--name", "X", "--config", "{unknown}"], ["unknown config key", "train.epoch"]),
    ("weights for another architecture", ["train", "--name", "X", "--weights", "{wrong_weights}"], ["weights"]),
    ("epochs 0", ["train", "--name", "X", "--epochs", "0"], ["--epochs"]),
    ("epochs negative", ["train", "--name", "X", "--epochs", "-3"], ["--epochs"]),
    ("negative train size", ["train", "--name", "X", "--train-size", "-1"], ["--train-size"]),
    ("negative batch size", ["train", "--name", "X", "--batch-size", "-8"], ["--batch-size"]),
]


@pytest.mark.parametrize("case_id,argv,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(populated: dict, case_id: str, argv: list[str],
                                                          words: list[str]) -> None:
    home = populated["home"]
    argv = [a.format(**{k: v for k, v in populated.items() if isinstance(v, Path)}) for a in argv]
    store = JournalStore.open(url=f"sqlite:///{home / 'fastpose.db'}")
    counts_before = store.counts()
    store.close()
    tree_before = _tree(populated["root"])

    proc = subprocess.run([sys.executable, "-m", "fastpose", *argv], env=populated["env"], cwd=populated["root"],
                          capture_output=True, text=True, timeout=TIMEOUT)

    assert proc.returncode == 2, (case_id, proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{case_id}: expected one line, got:\n{proc.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], f"{case_id}: {word!r} not in {lines[0]!r}"
    store = JournalStore.open(url=f"sqlite:///{home / 'fastpose.db'}")
    assert store.counts() == counts_before, case_id
    store.close()
    assert _tree(populated["root"]) == tree_before, f"{case_id} changed files on disk"


@pytest.mark.slow
def test_unwritable_run_directory_is_a_clear_crash(fp_home: Path, tmp_path: Path) -> None:
    """A full disk, simulated by a runs/ folder that cannot be written: the run is `crashed`, naming the error.

    As a normal user runs/ is made read-only; root writes through permissions, so there runs/ is a plain file
    (mkdir under it fails the same way a full or read-only disk makes it fail).
    """
    env = dict(os.environ, FASTPOSE_HOME=str(fp_home), COLUMNS="200")
    env.pop("FASTPOSE_JOURNAL_URL", None)
    subprocess.run([sys.executable, "-m", "fastpose", "journal", "note", "before the full disk"],
                   env=env, cwd=tmp_path, check=True, capture_output=True, timeout=TIMEOUT)
    runs = fp_home / "runs"
    as_root = os.geteuid() == 0
    if as_root:
        runs.write_text("not a directory")
    else:
        runs.mkdir(exist_ok=True)
        runs.chmod(0o555)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "fastpose", "train", "--name", "FULLDISK", "--epochs", "1",
             "--train-size", "8", "--val-size", "4", "--batch-size", "4", "--image-size", "32", "--no-progress"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
        )
    finally:
        if not as_root:
            runs.chmod(0o755)
    assert proc.returncode not in (0, 2), proc.stderr[-2000:]
    assert not proc.stderr.strip().splitlines()[-1].startswith("Traceback")
    store = JournalStore.open(url=f"sqlite:///{fp_home / 'fastpose.db'}")
    try:
        run = store.resolve("FULLDISK")
        assert run.status == "crashed", run
        assert run.error_type and run.error_message, run
        assert any(word in run.error_message for word in ("Not a directory", "Permission denied", "runs")), run
    finally:
        store.close()
