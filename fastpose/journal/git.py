"""Capture the git state a run starts from (GitPython). Never raises: a run is never blocked by git."""

from __future__ import annotations

from pathlib import Path

from fastpose.journal.records import GitState

__all__ = ["GitState", "capture_git"]


def capture_git(path: str | Path = ".") -> GitState:
    """Commit, branch (None if detached), dirty flag, full diff vs HEAD, untracked names, commit message.

    Not a repository, git missing, or any git failure is recorded in ``error`` instead of raised.
    """
    try:
        import git
    except ImportError as exc:  # GitPython installed but no git executable: it raises at import
        return GitState(is_repo=False, error=f"git unavailable: {str(exc).splitlines()[0]}")
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return GitState(is_repo=False, error="not a git repository")
    except Exception as exc:  # noqa: BLE001 - capture must never block a run
        return GitState(is_repo=False, error=f"{type(exc).__name__}: {exc}")
    try:
        with repo:
            return _capture(repo)
    except Exception as exc:  # noqa: BLE001
        return GitState(is_repo=True, error=f"{type(exc).__name__}: {exc}")


def _capture(repo) -> GitState:  # noqa: ANN001 - git.Repo, imported lazily
    untracked = tuple(sorted(repo.untracked_files))
    branch = None if repo.head.is_detached else repo.active_branch.name
    if not repo.head.is_valid():  # a repository without commits yet
        staged = [line for line in repo.git.status("--porcelain").splitlines() if not line.startswith("??")]
        return GitState(
            is_repo=True,
            branch=branch,
            dirty=bool(staged),
            untracked=untracked,
            error="no commits yet",
        )
    commit = repo.head.commit
    # staged and unstaged changes together, against HEAD; binary files as "Binary files differ"
    diff = repo.git.diff("HEAD", "--no-color", "--no-ext-diff")
    if diff and not diff.endswith("\n"):
        diff += "\n"
    return GitState(
        is_repo=True,
        commit=commit.hexsha,
        branch=branch,
        dirty=bool(diff),  # untracked files are listed, not counted as dirty (as git does)
        diff=diff or None,
        untracked=untracked,
        message=commit.message.strip(),
    )
