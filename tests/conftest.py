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
