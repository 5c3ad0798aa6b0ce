"""Capture the git state a run starts from (GitPython). Never raises: a run is never blocked by git."""

from __future__ import annotations

from pathlib import Path

from fastpose.journal.records import GitState, SourceState

__all__ = ["GitState", "SourceState", "capture_git", "capture_source", "fastpose_version"]


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


# What a run keeps of its untracked files' contents (the names are all kept): regular files (not links) of at
# most UNTRACKED_FILE_MAX bytes, in name order, up to UNTRACKED_COUNT_MAX files and UNTRACKED_TOTAL_MAX bytes
# in all. Enough for the new module or script beside a commit; data files stay out of the journal.
UNTRACKED_FILE_MAX = 256 * 1024
UNTRACKED_TOTAL_MAX = 1024 * 1024
UNTRACKED_COUNT_MAX = 64


def untracked_contents(root: str | Path, names: tuple[str, ...]) -> tuple[tuple[str, int, bytes], ...]:
    """``(name, permission bits, bytes)`` of the untracked files worth keeping (the limits above); never raises."""
    import os
    import stat

    out: list[tuple[str, int, bytes]] = []
    total = 0
    for name in names:
        if len(out) >= UNTRACKED_COUNT_MAX:
            break
        path = Path(root) / name
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_size > UNTRACKED_FILE_MAX or total + st.st_size > UNTRACKED_TOTAL_MAX:
                continue
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as f:
                data = f.read(UNTRACKED_FILE_MAX + 1)
        except (OSError, ValueError):
            continue
        if len(data) > UNTRACKED_FILE_MAX or total + len(data) > UNTRACKED_TOTAL_MAX:
            continue
        total += len(data)
        out.append((name, stat.S_IMODE(st.st_mode), data))
    return tuple(out)


def _capture(repo) -> GitState:  # noqa: ANN001 - git.Repo, imported lazily
    untracked = tuple(sorted(repo.untracked_files))
    files = untracked_contents(repo.working_tree_dir or ".", untracked)
    branch = None if repo.head.is_detached else repo.active_branch.name
    if not repo.head.is_valid():  # a repository without commits yet
        staged = [line for line in repo.git.status("--porcelain").splitlines() if not line.startswith("??")]
        return GitState(
            is_repo=True,
            branch=branch,
            dirty=bool(staged),
            untracked=untracked,
            error="no commits yet",
            files=files,
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
        files=files,
    )


def fastpose_version() -> str:
    """The installed distribution's version (what pip installed), else the package's ``__version__``."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("fastpose")
    except (ImportError, PackageNotFoundError, ValueError):
        import fastpose

        return fastpose.__version__


def package_dir() -> Path:
    import fastpose

    return Path(fastpose.__file__).resolve().parent


def capture_source(cwd: str | Path = ".", package: str | Path | None = None) -> SourceState:
    """The fastpose code this process runs: version, package directory, and the git state of the checkout
    the package is a tracked part of (an editable install, ``pip install -e``). An installed copy (in
    site-packages, even inside a repository's ``.venv``) is no checkout: its files are not tracked there.
    ``same_as_cwd``: the checkout is the repository of ``cwd`` (whose diff ``capture_git(cwd)`` records).
    Never raises."""
    package = Path(package) if package is not None else package_dir()
    base = {"version": fastpose_version(), "location": str(package)}
    try:
        import git
    except ImportError as exc:
        return SourceState(is_repo=False, error=f"git unavailable: {str(exc).splitlines()[0]}", **base)
    try:
        repo = git.Repo(package, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return SourceState(is_repo=False, error="installed package, not a git checkout", **base)
    except Exception as exc:  # noqa: BLE001 - capture must never block a run
        return SourceState(is_repo=False, error=f"{type(exc).__name__}: {exc}", **base)
    try:
        with repo:
            root = Path(repo.working_tree_dir or "").resolve()
            init = (package / "__init__.py").resolve().relative_to(root).as_posix()
            if not repo.git.ls_files("--", init):  # inside a repository, but not one of its files
                return SourceState(is_repo=False, error="installed package, not a git checkout", **base)
            state = _capture(repo)
            same = _repo_root(cwd) == root
            if same:  # the working directory's git state holds the diff and untracked files already
                state = GitState(is_repo=True, commit=state.commit, branch=state.branch, dirty=state.dirty,
                                 message=state.message, error=state.error)
            return SourceState(**state.__dict__, same_as_cwd=same, **base)
    except Exception as exc:  # noqa: BLE001
        return SourceState(is_repo=False, error=f"{type(exc).__name__}: {exc}", **base)


def _repo_root(path: str | Path) -> Path | None:
    import git

    try:
        with git.Repo(path, search_parent_directories=True) as repo:
            return Path(repo.working_tree_dir or "").resolve()
    except Exception:  # noqa: BLE001 - not a repository, or none readable
        return None
