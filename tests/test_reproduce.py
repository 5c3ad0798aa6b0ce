"""`fastpose reproduce` end to end: a tiny run trained from a temporary fastpose checkout with an uncommitted
change that imports an untracked module, rebuilt in a fresh git worktree and trained again there; every
journaled number compared. And every refusal: one line, exit 2, nothing made."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--image-size", "32", "--train-size", "16", "--val-size", "8", "--batch-size", "8", "--no-progress",
        "--log-images", "0", "--epochs", "2"]
GIT = ["git", "-c", "user.name=fastpose tests", "-c", "user.email=tests@fastpose.invalid", "-c", "init.defaultBranch=main"]
PATCH_FROM = "    return LOSSES[name](eps=eps, mask_weight=mask_weight,"
PATCH_TO = ("    from fastpose.pose.lab_scale import MASK_SCALE\n\n"
            "    return LOSSES[name](eps=eps, mask_weight=mask_weight * MASK_SCALE,")
SCALE = "MASK_SCALE = 3.0  # the lab tries a heavier mask loss\n"


def lab_checkout(path: Path) -> str:
    """A git repository holding this fastpose (package and migrations), committed; returns the commit."""
    path.mkdir(parents=True)
    shutil.copytree(ROOT / "fastpose", path / "fastpose", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "migrations", path / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    (path / ".gitignore").write_text("__pycache__/\n/journal/\n")
    subprocess.run([*GIT, "init", "-q"], cwd=path, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=path, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "fastpose as the lab has it"], cwd=path, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True, text=True).stdout.strip()


def env_for(home: Path, repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FASTPOSE_JOURNAL_URL", "FASTPOSE_FAULT", "FASTPOSE_HOME")}
    env.update(FASTPOSE_HOME=str(home), PYTHONPATH=str(repo), COLUMNS="250", PYTHONUNBUFFERED="1")
    return env


def fastpose(home: Path, repo: Path, *args: str, cwd: Path | None = None, timeout: float = 600):
    return subprocess.run([sys.executable, "-m", "fastpose", *args], cwd=cwd or repo, env=env_for(home, repo),
                          capture_output=True, text=True, timeout=timeout)


def store_at(home: Path):
    from fastpose.journal.store import JournalStore

    return JournalStore.open(f"sqlite:///{home / 'fastpose.db'}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> tuple[Path, Path, str]:
    """(checkout, home, commit): run REPRO trained with an uncommitted change and an untracked module."""
    base = tmp_path_factory.mktemp("lab")
    repo, home = base / "fastpose-lab", base / "home"
    commit = lab_checkout(repo)
    losses = repo / "fastpose" / "pose" / "losses.py"
    text = losses.read_text()
    assert PATCH_FROM in text
    losses.write_text(text.replace(PATCH_FROM, PATCH_TO))
    (repo / "fastpose" / "pose" / "lab_scale.py").write_text(SCALE)
    proc = fastpose(home, repo, "train", "--name", "REPRO", *TINY)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return repo, home, commit


@pytest.mark.slow
def test_reproduce_rebuilds_the_code_and_gives_every_number_again(lab: tuple[Path, Path, str]) -> None:
    repo, home, commit = lab
    store = store_at(home)
    original = store.resolve("REPRO")
    source, git = store.source_state(original.id), store.git_state(original.id)
    assert source.is_repo and source.same_as_cwd and source.commit == commit
    assert "lab_scale" in git.diff and git.untracked == ("fastpose/pose/lab_scale.py",)
    assert store.untracked_files(original.id, "cwd") == [("fastpose/pose/lab_scale.py", 0o644, SCALE.encode())]
    store.close()
    worktrees_before = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True).stdout

    proc = fastpose(home, repo, "reproduce", "REPRO", "--check")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert f"code of run #{original.id}: commit {commit[:12]} + its diff" in out and "+ 1 untracked file(s)" in out
    assert "note:" not in out  # the same interpreter: no version differs
    assert "not rebuilt: this interpreter's packages, this machine" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("reproduced: "))
    n = int(line.split()[1])
    assert line == f"reproduced: {n} of {n} numbers identical" and n > 50

    store = store_at(home)
    new = store.reproductions(original.id)[0]
    assert new.reproduces_id == original.id and new.status == "completed" and new.id != original.id
    assert new.config == original.config  # the stored config and seeds, unchanged
    # the code it ran is the code the original ran: the same commit, the same diff, the same untracked file
    new_source, new_git = store.source_state(new.id), store.git_state(new.id)
    assert new_source.commit == commit and new_git.commit == commit
    assert new_git.diff == git.diff and new_git.untracked == git.untracked
    worktree = Path(new.cwd)
    assert worktree.is_dir() and (worktree / "fastpose" / "pose" / "lab_scale.py").read_text() == SCALE
    assert "lab_scale" in (worktree / "fastpose" / "pose" / "losses.py").read_text()
    # filed under this home, its files moved along; the scratch journal is gone
    assert Path(new.run_dir).parent.parent == home / "runs" and (Path(new.run_dir) / "checkpoints" / "last.ckpt").is_file()
    assert not list((home / "reproduce").glob(".reproduce-*"))
    history_a = [(p.name, p.epoch, p.step, p.value) for p in store.metric_history(original.id)]
    history_b = [(p.name, p.epoch, p.step, p.value) for p in store.metric_history(new.id)]
    assert len(history_a) == n and sorted(history_a, key=repr) == sorted(history_b, key=repr)
    store.close()
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True).stdout
    assert str(worktree) in worktrees and len(worktrees.splitlines()) == len(worktrees_before.splitlines()) + 1

    shown = fastpose(home, repo, "journal", "show", str(new.id))
    assert f"reproduces    #{original.id} " in shown.stdout, shown.stdout
    assert f"reproduced by  #{new.id}" in fastpose(home, repo, "journal", "show", str(original.id)).stdout

    # a number that differs is shown with both values and the difference
    from fastpose.journal.models import Metric
    import sqlalchemy as sa
    from fastpose.screens.reproduction import check
    from fastpose.screens.terminal.console import safe_console
    from fastpose.screens.terminal.reproduction import render_check

    store = store_at(home)
    table = Metric.__table__
    with store.engine.begin() as conn:
        mid = conn.execute(sa.select(table.c.id).where(table.c.run_id == new.id, table.c.name == "val/loss")
                           .order_by(table.c.id)).first()[0]
        conn.execute(sa.update(table).where(table.c.id == mid).values(value=table.c.value + 0.25))
    result = check(store, original, new)
    store.close()
    assert result.total == n and result.identical == n - 1 and len(result.differences) == 1
    assert result.differences[0].name == "val/loss" and result.differences[0].delta == pytest.approx(0.25)
    import io

    console = safe_console()
    console.file = io.StringIO()
    render_check(result, console)
    text = console.file.getvalue()
    assert f"reproduced: {n - 1} of {n} numbers identical" in text and "val/loss" in text and "+0.25" in text


def fake_run(home: Path, repo: Path, *, commit: str | None, diff: str | None, is_repo: bool = True,
             name: str = "FAKE", status: str = "completed") -> int:
    """A run journaled as if trained from ``repo`` at ``commit`` with ``diff`` (no training)."""
    from fastpose.journal.records import GitState, SourceState

    store = store_at(home)
    git = GitState(is_repo=True, commit=commit, branch="main", dirty=bool(diff), diff=diff, untracked=("gone.txt",))
    source = SourceState(is_repo=is_repo, commit=commit if is_repo else None, version="0.1.0",
                         location=str(repo / "fastpose"), same_as_cwd=is_repo,
                         error=None if is_repo else "installed package, not a git checkout")
    n = len(store.list_runs(deleted="all"))
    run = store.start_run(name=name, label=f"26-11-0{n + 1}/10-00-{name}-SYNTHETIC-resnet18-scratch",
                          config={"name": name}, git=git, source=source)
    if status != "running":
        store.finish(run.id, status=status)
    store.close()
    return run.id


def test_reproduce_refusals_one_line_nothing_made(tmp_path: Path) -> None:
    repo, home, elsewhere = tmp_path / "lab", tmp_path / "home", tmp_path / "elsewhere"
    commit = lab_checkout(repo)
    elsewhere.mkdir()
    diff_ok = ("diff --git a/fastpose/pose/lab_note.txt b/fastpose/pose/lab_note.txt\nnew file mode 100644\n"
               "--- /dev/null\n+++ b/fastpose/pose/lab_note.txt\n@@ -0,0 +1 @@\n+hello\n")
    bad_diff = ("diff --git a/fastpose/config.py b/fastpose/config.py\n--- a/fastpose/config.py\n+++ b/fastpose/config.py\n"
                "@@ -1,2 +1,2 @@\n-this line is not in the file\n+nor is this\n")
    fake_run(home, repo, commit=commit, diff=diff_ok, name="OK")
    missing = fake_run(home, repo, commit="0123456789abcdef" * 2 + "01234567", diff=None, name="NOCOMMIT")
    conflict = fake_run(home, repo, commit=commit, diff=bad_diff, name="CONFLICT")
    installed = fake_run(home, repo, commit=None, diff=None, is_repo=False, name="INSTALLED")
    running = fake_run(home, repo, commit=commit, diff=None, name="LIVE", status="running")  # this process: alive
    deleted = fake_run(home, repo, commit=commit, diff=None, name="GONE")
    assert fastpose(home, repo, "journal", "rm", "GONE").returncode == 0
    taken = tmp_path / "taken"
    taken.mkdir()

    def state() -> tuple:
        store = store_at(home)
        counts = store.counts()
        store.close()
        worktrees = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True).stdout
        files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if ".git/" not in str(p) and
                       "__pycache__" not in str(p) and not p.name.startswith("fastpose.db"))
        return counts, worktrees, files

    before = state()
    cases = [
        (["reproduce", "NOPE"], repo, ["no run matches 'NOPE'"]),
        (["reproduce", "GONE"], repo, [f"run #{deleted}", "is deleted"]),
        (["reproduce", "NOCOMMIT"], repo, [f"of run #{missing} is not in the repository", "0123456789ab"]),
        (["reproduce", "CONFLICT"], repo, [f"the recorded diff of run #{conflict} does not apply to commit {commit[:12]}"]),
        (["reproduce", "INSTALLED"], repo, [f"run #{installed} ran an installed fastpose", "train --from"]),
        (["reproduce", "LIVE"], repo, [f"run #{running}", "is running"]),
        (["reproduce", "OK", "--worktree", str(taken)], repo, [f"{taken} exists"]),
        (["reproduce", "OK"], elsewhere, ["is not in a git repository", "--repo"]),
        (["reproduce", "OK", "--repo", str(elsewhere)], repo, [f"{elsewhere} is not in a git repository"]),
    ]
    for args, cwd, words in cases:
        proc = fastpose(home, repo, *args, cwd=cwd)
        assert proc.returncode == 2, (args, proc.returncode, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, proc.stderr)
        for word in words:
            assert word in lines[0], (args, word, lines[0])
    assert state() == before


def test_recorded_and_current_versions_are_told_apart() -> None:
    from datetime import datetime, timezone
    from importlib.metadata import version

    from fastpose.journal.records import RunRecord
    from fastpose.training.reproduce import version_differences

    now = datetime.now(timezone.utc)
    same = RunRecord(id=1, name="A", label="a", status="completed", created_at=now, started_at=now,
                     python_version=sys.version.split()[0], torch_version=version("torch"),
                     lightning_version=version("pytorch-lightning"))
    assert version_differences(same) == []
    older = RunRecord(id=2, name="B", label="b", status="completed", created_at=now, started_at=now,
                      python_version="3.9.1", torch_version="1.13.1+cu117", lightning_version=version("pytorch-lightning"),
                      environment={"versions": {"numpy": "1.21.0"}})
    assert version_differences(older) == [("python", "3.9.1", sys.version.split()[0]),
                                          ("torch", "1.13.1+cu117", version("torch")),
                                          ("numpy", "1.21.0", version("numpy"))]
