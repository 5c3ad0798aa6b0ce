"""git capture on temporary repositories: clean, dirty (diff), untracked, detached, no commits, no repo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fastpose.journal.git import GitState, capture_git


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", "-c", "commit.gpgsign=false", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    (path / "train.py").write_text("lr = 1e-3\n")
    (path / "README.md").write_text("hello\n")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "first commit\n\nwith a body")
    return path


def test_clean(repo: Path) -> None:
    g = capture_git(repo)
    assert g == GitState(is_repo=True, commit=_git(repo, "rev-parse", "HEAD"), branch="main", dirty=False,
                         diff=None, untracked=(), message="first commit\n\nwith a body")


def test_dirty_staged_and_unstaged_diff(repo: Path) -> None:
    (repo / "train.py").write_text("lr = 2e-3\n")  # unstaged
    (repo / "README.md").write_text("hello\nworld\n")
    _git(repo, "add", "README.md")  # staged
    g = capture_git(repo / "train.py")  # any path inside the repository
    assert g.dirty and g.untracked == ()
    assert "-lr = 1e-3\n+lr = 2e-3" in g.diff and "+world" in g.diff
    assert "diff --git a/README.md b/README.md" in g.diff and g.commit == _git(repo, "rev-parse", "HEAD")


def test_untracked(repo: Path) -> None:
    (repo / "notes.txt").write_text("x\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "new.py").write_text("y\n")
    g = capture_git(repo)
    assert g.untracked == ("notes.txt", "sub/new.py") and not g.dirty and g.diff is None


def test_detached_head(repo: Path) -> None:
    first = _git(repo, "rev-parse", "HEAD")
    (repo / "train.py").write_text("lr = 3e-3\n")
    _git(repo, "commit", "-q", "-am", "second")
    _git(repo, "checkout", "-q", "--detach", first)
    g = capture_git(repo)
    assert g.is_repo and g.branch is None and g.commit == first and g.message == "first commit\n\nwith a body"


def test_no_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    g = capture_git(plain)
    assert g == GitState(is_repo=False, error="not a git repository")


def test_missing_path_and_no_commits_never_raise(tmp_path: Path) -> None:
    assert not capture_git(tmp_path / "does-not-exist").is_repo
    empty = tmp_path / "empty"
    empty.mkdir()
    _git(empty, "init", "-q", "-b", "main")
    (empty / "a.py").write_text("1\n")
    g = capture_git(empty)
    assert g.is_repo and g.commit is None and g.branch == "main" and g.untracked == ("a.py",)
    assert g.error == "no commits yet"
