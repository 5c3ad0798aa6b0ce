"""Shared fixtures: every test gets its own journal home, so no test touches ./journal."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


@pytest.fixture
def fp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $FASTPOSE_HOME (SQLite journal inside) for this test; $FASTPOSE_JOURNAL_URL unset."""
    home = tmp_path / "fphome"
    monkeypatch.setenv("FASTPOSE_HOME", str(home))
    monkeypatch.delenv("FASTPOSE_JOURNAL_URL", raising=False)
    return home


@pytest.fixture
def fastpose_exe() -> list[str]:
    """The command that runs the real CLI in a subprocess."""
    return [sys.executable, "-m", "fastpose"]


# ---------------------------------------------------------------------------- journal (issue 2)

JOURNAL_BACKENDS = ["sqlite"]  # a later issue adds "postgresql" (a throwaway server) here


@pytest.fixture(params=JOURNAL_BACKENDS)
def journal_db_url(request: pytest.FixtureRequest, fp_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """URL of a fresh, empty journal database, also exported as $FASTPOSE_JOURNAL_URL for subprocesses."""
    if request.param == "sqlite":
        url = f"sqlite:///{fp_home / 'fastpose.db'}"
    else:  # pragma: no cover - added with the PostgreSQL issue
        raise NotImplementedError(request.param)
    monkeypatch.setenv("FASTPOSE_JOURNAL_URL", url)
    return url


@pytest.fixture
def journal_store(journal_db_url: str):
    """An open JournalStore on the fresh journal of ``journal_db_url``."""
    from fastpose.journal.store import JournalStore

    store = JournalStore.open(journal_db_url)
    yield store
    store.close()


@pytest.fixture
def run_cli(fastpose_exe: list[str]):
    """Run ``fastpose ARGS...`` in a subprocess (environment of the test); returns CompletedProcess."""
    import subprocess

    def run(*args: str, check: bool = False, **kwargs):  # noqa: ANN202
        proc = subprocess.run([*fastpose_exe, *args], capture_output=True, text=True, timeout=120, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError(f"fastpose {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run
