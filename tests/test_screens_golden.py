"""The terminal screens, byte for byte: every screen of a journal built by direct inserts
(``tests/golden/build_journal.py``: fixed times, hosts and versions) drawn through the real CLI at
``COLUMNS=80`` and ``160`` and compared with the files in ``tests/golden/``.

A change to what a screen shows is a change to its golden file, made on purpose:
``FASTPOSE_UPDATE_GOLDEN=1 pytest tests/test_screens_golden.py`` rewrites them; review the diff.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
FIXTURE = Path(__file__).parent / "checkpoint_fixtures" / "fastpose-0.1.0-1f67690.ckpt.gz"
UPDATE = os.environ.get("FASTPOSE_UPDATE_GOLDEN") == "1"

# screen name -> arguments; JSON screens are drawn once (their width does not matter)
SCREENS = {
    "journal": ["journal"],
    "journal-crashed": ["journal", "--status", "crashed"],
    "journal-sweep": ["journal", "--sweep", "ls"],
    "show-resumed": ["journal", "show", "2"],
    "show-crashed": ["journal", "show", "MSE_BASELINE"],
    "sweeps": ["journal", "sweeps"],
    "compare": ["compare", "1", "2", "3"],
    "compare-spark": ["compare", "AGG_QLOSS", "AGG_QLOSS_CONT", "--spark", "--per-class"],
    "compare-sweep": ["compare", "--sweep", "ls"],
    "compare-by": ["compare", "--by", "loss.name", "5", "6", "7", "8", "9", "10"],
    "compare-threads": ["compare", "REPRO", "REPRO_1THREAD"],
    "show-environment": ["journal", "show", "REPRO"],
}
JSON_SCREENS = {
    "journal.json": ["journal", "--json"],
    "compare.json": ["compare", "1", "2", "3", "--json"],
    "compare-sweep.json": ["compare", "--sweep", "ls", "--json"],
    "compare-sweep.csv": ["compare", "--sweep", "ls", "--csv"],
}


@pytest.fixture(scope="module")
def journal() -> Iterator[Path]:
    # The panels are as wide as their widest line, and a run dir holds the home path: a home of one
    # fixed length (mkdtemp's names are) keeps the drawings independent of where pytest puts its tmp.
    root = Path(tempfile.mkdtemp(prefix="fastpose-golden-", dir="/tmp"))
    home = root / "home"
    sys.path.insert(0, str(GOLDEN))
    try:
        from build_journal import build
    finally:
        sys.path.pop(0)
    build(home)
    yield home
    shutil.rmtree(root, ignore_errors=True)


def _draw(home: Path, args: list[str], columns: int) -> str:
    env = {**os.environ, "FASTPOSE_HOME": str(home), "COLUMNS": str(columns), "TZ": "UTC"}
    env.pop("FASTPOSE_JOURNAL_URL", None)
    proc = subprocess.run([sys.executable, "-m", "fastpose", *args], capture_output=True, text=True, env=env,
                          cwd=home.parent, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.replace(str(home), "<HOME>")


def _check(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        path.write_text(text)
        return
    assert path.exists(), f"no golden file {path.name}: run with FASTPOSE_UPDATE_GOLDEN=1"
    expected = path.read_text()
    if text != expected:
        import difflib

        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "golden", "now", n=1))
        pytest.fail(f"{name} differs from its golden file:\n{diff[:6000]}")


@pytest.mark.parametrize("columns", [80, 160])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_terminal_screens_match_their_golden_files(journal: Path, screen: str, columns: int) -> None:
    _check(f"{screen}-{columns}", _draw(journal, SCREENS[screen], columns))


@pytest.mark.parametrize("screen", list(JSON_SCREENS))
def test_json_and_csv_screens_match_their_golden_files(journal: Path, screen: str) -> None:
    _check(screen, _draw(journal, JSON_SCREENS[screen], 100))


def test_the_markdown_export_matches_its_golden_file(journal: Path, tmp_path: Path) -> None:
    out = tmp_path / "lablog.md"
    _draw(journal, ["journal", "export", str(out)], 100)
    _check("export.md", out.read_text().replace(str(journal), "<HOME>"))


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 160])
def test_the_evaluation_table_matches_its_golden_file(journal: Path, tmp_path: Path, columns: int) -> None:
    """``eval`` of the earlier-version checkpoint fixture (weights zero: every number is defined by the
    evaluation, none by training) on its own 4-image validation split."""
    ckpt = tmp_path / "old.ckpt"
    with gzip.open(FIXTURE, "rb") as src, ckpt.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    text = _draw(journal, ["eval", "AGG_QLOSS_CONT", "--checkpoint", str(ckpt)], columns)
    text = text.replace(str(tmp_path), "<TMP>")
    text = "\n".join("journaled as evaluation #N" if line.startswith("journaled as evaluation #") else line
                     for line in text.splitlines()) + "\n"
    _check(f"eval-{columns}", text)
