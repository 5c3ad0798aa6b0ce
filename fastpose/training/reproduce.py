"""``fastpose reproduce RUN [--check]``: rebuild the code a run ran and train it again, as a new run linked to it.

| step | what |
| ---- | ---- |
| 1. the code | the run's fastpose checkout (``source_states``; its diff and untracked files are the working directory's when the two are one repository, ``git_states``): the commit, the recorded diff, the untracked files the journal holds |
| 2. checks | before anything is made: the commit is in the repository (``--repo``, else the one around the working directory), the diff applies to it (``git apply --check`` on a scratch index), the worktree path does not exist, the run is not running |
| 3. worktree | ``git worktree add --detach PATH COMMIT``, the diff applied, the held untracked files written (names it does not hold are listed as not restored); anything failing removes the worktree again |
| 4. train | ``python -m fastpose train --config <worktree>.toml`` (the run's stored config; ``OMP_NUM_THREADS`` set to the thread count the run used) in a subprocess whose ``PYTHONPATH`` starts with the worktree, so the rebuilt code runs, not this one; it writes into a journal of its own (the rebuilt code may know an older schema) |
| 5. file it | the run is copied into this journal (``fastpose.journal.transfer``) with ``reproduces_id`` = RUN, its directory moved under this home's ``runs/`` |
| 6. ``--check`` | every number the original journaled (its metric history; a resumed run's with the runs it continued) against the new run's: ``reproduced: N of N numbers identical``, or a table of those that differ |

What it does not rebuild, and says so when it differs: the Python packages (this interpreter's are used: torch,
Lightning, numpy; recorded and current versions are printed), the machine (another CPU or GPU can change the
last digits of every number), and data outside the journal (NOCS files at
``data.data_root``). Exit codes: 0 done (and, with ``--check``, every number identical), 1 the training did
not complete or ``--check`` found differences, 2 refused (nothing made).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from fastpose.errors import FastposeError


@dataclass
class CodeState:
    """What to rebuild: a commit, a diff and untracked files, and where the package lies in the tree."""

    commit: str
    diff: str | None
    untracked: tuple[str, ...]
    files: list[tuple[str, int, bytes]]
    package: str  # the package directory relative to the repository root ("fastpose", "src/fastpose")
    recorded_root: str | None  # the checkout's root when the run started (to place its working directory)


@dataclass
class Reproduction:
    original: Any  # RunRecord
    run: Any | None  # the new RunRecord (None: the training wrote no run)
    worktree: Path
    exit_code: int
    check: Any | None = None  # fastpose.screens.reproduction.CheckResult
    not_restored: list[str] = field(default_factory=list)


def git(repo: Path, *args: str, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, input=input)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[0] if lines else "no message"


# ----------------------------------------------------------------------------- step 1-2: what, and checks
def code_state(reader: Any, run: Any) -> CodeState:
    """The code run ``run`` ran, from the journal; FastposeError (one line) where none can be rebuilt."""
    source = reader.source_state(run.id)
    if source is None:
        raise FastposeError(f"run #{run.id} was journaled before fastpose recorded the code a run ran; "
                            "nothing to rebuild (train --from {0} reruns its config)".format(run.id))
    if not source.is_repo:
        raise FastposeError(f"run #{run.id} ran an installed fastpose {source.version or ''} (no git checkout); "
                            f"nothing to rebuild (train --from {run.id} reruns its config with this code)")
    if not source.commit:
        raise FastposeError(f"run #{run.id}'s fastpose checkout had no commit yet; nothing to rebuild")
    if source.same_as_cwd:
        state, tree = reader.git_state(run.id), "cwd"
    else:
        state, tree = source, "source"
    location = PurePosixPath(source.location or "fastpose")
    return CodeState(commit=source.commit, diff=state.diff if state else None,
                     untracked=tuple(state.untracked) if state else (), files=reader.untracked_files(run.id, tree),
                     package=location.name, recorded_root=str(location.parent) if source.location else None)


def find_repo(path: Path | None) -> Path:
    """The repository to rebuild from: ``path`` (``--repo``), else the one around the working directory."""
    where = Path(path) if path is not None else Path.cwd()
    proc = git(where, "rev-parse", "--show-toplevel")
    if proc.returncode != 0:
        hint = "" if path is not None else "; run reproduce inside the fastpose checkout, or give --repo"
        raise FastposeError(f"{where} is not in a git repository{hint}")
    return Path(proc.stdout.strip())


def package_in_commit(repo: Path, commit: str, recorded: str) -> str:
    """The package directory (relative to the root) in ``commit``: ``recorded``'s name where the commit has
    ``<...>/<name>/__init__.py``, the shortest such path."""
    name = PurePosixPath(recorded).name
    proc = git(repo, "ls-tree", "-r", "--name-only", commit)
    found = sorted((p for p in proc.stdout.splitlines() if p == f"{name}/__init__.py" or p.endswith(f"/{name}/__init__.py")),
                   key=len)
    if not found:
        raise FastposeError(f"commit {commit[:12]} has no {name}/__init__.py: not a fastpose checkout")
    return str(PurePosixPath(found[0]).parent)


def check_rebuild(repo: Path, state: CodeState, run: Any) -> None:
    """The commit is there and the diff applies to it; checked on a scratch index, nothing is written."""
    if git(repo, "cat-file", "-e", f"{state.commit}^{{commit}}").returncode != 0:
        raise FastposeError(f"commit {state.commit[:12]} of run #{run.id} is not in the repository {repo} "
                            "(fetch it, or give --repo)")
    if not state.diff:
        return
    with tempfile.TemporaryDirectory(prefix="fastpose-index-") as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        read = git(repo, "read-tree", state.commit, env=env)
        if read.returncode != 0:
            raise FastposeError(f"cannot read commit {state.commit[:12]}: {_first_line(read.stderr)}")
        proc = git(repo, "apply", "--cached", "--check", "-", env=env, input=state.diff)
    if proc.returncode != 0:
        raise FastposeError(f"the recorded diff of run #{run.id} does not apply to commit {state.commit[:12]}: "
                            f"{_first_line(proc.stderr)}")


def safe_relative(path: str) -> PurePosixPath | None:
    """An untracked file's path if it stays inside the worktree (relative, no ``..``, not into ``.git``)."""
    p = PurePosixPath(path)
    if p.is_absolute() or not p.parts or any(part in ("..", "") for part in p.parts) or p.parts[0] == ".git":
        return None
    return p


# ----------------------------------------------------------------------------- step 3: the worktree
def make_worktree(repo: Path, state: CodeState, path: Path) -> list[str]:
    """Create the worktree, apply the diff, write the held untracked files; returns the untracked names it
    could not restore. Removes the worktree again if any step fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = git(repo, "worktree", "add", "--detach", str(path), state.commit)
    if proc.returncode != 0:
        raise FastposeError(f"git worktree add {path} failed: {_first_line(proc.stderr)}")
    try:
        if state.diff:
            applied = git(path, "apply", "--whitespace=nowarn", "-", input=state.diff)
            if applied.returncode != 0:
                raise FastposeError(f"the recorded diff does not apply in {path}: {_first_line(applied.stderr)}")
        held = {name for name, _, _ in state.files}
        for name, mode, data in state.files:
            rel = safe_relative(name)
            if rel is None:
                continue
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            os.chmod(target, mode & 0o777)
        return [name for name in state.untracked if name not in held or safe_relative(name) is None]
    except BaseException:
        remove_worktree(repo, path)
        raise


def remove_worktree(repo: Path, path: Path) -> None:
    git(repo, "worktree", "remove", "--force", str(path))
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    git(repo, "worktree", "prune")


# ----------------------------------------------------------------------------- versions
def current_versions() -> dict[str, str | None]:
    """This interpreter's versions of what changes numbers (read from package metadata: no import)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name, dist in (("torch", "torch"), ("lightning", "pytorch-lightning"), ("numpy", "numpy")):
        try:
            out[name] = version(dist)
        except PackageNotFoundError:
            out[name] = None
    return out


def recorded_versions(run: Any) -> dict[str, str | None]:
    recorded = {"python": run.python_version, "torch": run.torch_version, "lightning": run.lightning_version}
    env_versions = (run.environment or {}).get("versions") if isinstance(run.environment, dict) else None
    if isinstance(env_versions, dict):
        for key in ("torch", "lightning", "numpy"):
            if env_versions.get(key):
                recorded[key] = str(env_versions[key])
    return recorded


def version_differences(run: Any) -> list[tuple[str, str | None, str | None]]:
    """``(package, recorded, current)`` for each recorded version that is not this interpreter's."""
    now = current_versions()
    return [(k, v, now.get(k)) for k, v in recorded_versions(run).items() if v and _norm(v) != _norm(now.get(k))]


def _norm(version: str | None) -> str | None:
    return None if version is None else str(version).split("+", 1)[0]


# ----------------------------------------------------------------------------- step 4-5: train, file it
def train_in(worktree: Path, state: CodeState, run: Any, scratch: Path, say: Callable[[str], None]) -> int:
    """Train the run's stored config with the worktree's code, into the journal at ``scratch``; its exit code.
    The config file stays beside the worktree (``<worktree>.toml``: the new run's command names it); the
    training's output is passed on, indented."""
    from fastpose.config import toml_text
    from fastpose.environment import carry_threads

    # The thread count changes the numbers (docs/reproducing.md): the one the run used, through
    # OMP_NUM_THREADS, which the automatic count (train.threads = 0) honours and older code's torch reads; a
    # count the config pins is used as it is. The stored config goes unchanged.
    threads, why = carry_threads(getattr(run, "environment", None), run.config, f"run #{run.id}")
    if why:
        say(f"note: {why}")
    config_file = worktree.with_name(worktree.name + ".toml")
    config_file.write_text(toml_text(run.config), encoding="utf-8")
    package_root = worktree / PurePosixPath(state.package).parent
    cwd = worktree
    if state.recorded_root and run.cwd:
        recorded_repo = PurePosixPath(state.recorded_root)
        for _ in PurePosixPath(state.package).parent.parts:
            recorded_repo = recorded_repo.parent
        try:
            cwd = worktree / PurePosixPath(run.cwd).relative_to(recorded_repo)
        except ValueError:
            cwd = Path(run.cwd) if Path(run.cwd).is_dir() else worktree
        if not cwd.is_dir():
            cwd = worktree
    env = {k: v for k, v in os.environ.items() if k not in ("FASTPOSE_JOURNAL_URL", "FASTPOSE_FAULT")}
    env.update(FASTPOSE_HOME=str(scratch / "home"), PYTHONPATH=os.pathsep.join(
        [str(package_root)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with subprocess.Popen([sys.executable, "-m", "fastpose", "train", "--config", str(config_file)], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        for line in proc.stdout:  # type: ignore[union-attr]
            say("  | " + line.rstrip("\n"))
    return proc.returncode


def file_run(scratch: Path, original: Any, home: Path) -> Any | None:
    """Copy the run the worktree trained (the scratch journal's only run) into this journal; None if none."""
    from fastpose.journal.db import run_dir_for
    from fastpose.journal.store import JournalStore
    from fastpose.journal.transfer import free_label, import_run

    db = scratch / "home" / "fastpose.db"
    if not db.exists():
        return None
    with JournalStore.open(f"sqlite:///{db}") as source:
        runs = source.list_runs(deleted="all")
        if not runs:
            return None
        made = runs[0]
        with JournalStore.open() as store:
            label = free_label(store, made.label, lambda lab: run_dir_for(home, lab).exists())
            target = run_dir_for(home, label)
            if made.run_dir and Path(made.run_dir).is_dir():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(made.run_dir, target)
                run_dir: str | None = str(target)
            else:
                run_dir = None
            return import_run(store, source, made.id, label=label, run_dir=run_dir, reproduces_id=original.id)


# ----------------------------------------------------------------------------- the command's work
def reproduce(ref: str, *, worktree: Path | None = None, repo: Path | None = None, with_check: bool = False,
              say: Callable[[str], None] = print) -> Reproduction:
    """The work of ``fastpose reproduce`` (the table in the module docstring)."""
    from fastpose.journal.access import mark_lost, open_reader
    from fastpose.journal.db import journal_home, journal_url

    reader = open_reader()
    if reader is None:
        raise FastposeError(f"the journal is empty ({journal_url()}): no runs yet")
    try:
        mark_lost(reader)
        original = reader.resolve(ref)
        if original.status == "running":
            raise FastposeError(f"run #{original.id} {original.label} is running; reproduce it once it has ended")
        state = code_state(reader, original)
    finally:
        reader.close()
    home = journal_home().absolute()
    repo_root = find_repo(repo)
    check_rebuild(repo_root, state, original)
    state.package = package_in_commit(repo_root, state.commit, state.package)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(worktree).absolute() if worktree is not None else home / "reproduce" / f"run{original.id}-{stamp}"
    for taken in (path, path.with_name(path.name + ".toml")):
        if os.path.lexists(taken):
            raise FastposeError(f"{taken} exists; give another --worktree")
    for package, was, now in version_differences(original):
        say(f"note: {package} {was} when run #{original.id} ran, {now or 'not installed'} now: numbers may differ")
    say("not rebuilt: this interpreter's packages, this machine (CPU/GPU) and data outside the journal")
    not_restored = make_worktree(repo_root, state, path)
    say(f"code of run #{original.id}: commit {state.commit[:12]}"
        + (f" + its diff ({len(state.diff.splitlines())} lines)" if state.diff else "")
        + (f" + {len(state.files)} untracked file(s)" if state.files else "") + f", in worktree {path}")
    for name in not_restored:
        say(f"not restored: untracked file {name} (the journal holds its name only)")
    scratch = Path(tempfile.mkdtemp(prefix=f".reproduce-{original.id}-", dir=_scratch_parent(home)))
    try:
        say(f"training run #{original.id}'s config with that code:")
        code = train_in(path, state, original, scratch, say)
        new = file_run(scratch, original, home)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = Reproduction(original, new, path, code, not_restored=not_restored)
    if new is not None and with_check:
        from fastpose.screens.reproduction import check

        reader = open_reader()
        try:
            result.check = check(reader, original, new)
        finally:
            reader.close()
    return result


def _scratch_parent(home: Path) -> Path:
    """Where the worktree's run trains before it is filed: beside this home's runs/ (one file system, so the
    run directory moves, never copies)."""
    parent = home / "reproduce"
    parent.mkdir(parents=True, exist_ok=True)
    return parent
