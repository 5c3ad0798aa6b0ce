"""The house's rules (docs/ARCHITECTURE.md, "Layers"), as import-linter contracts in pyproject.toml.

``lint-imports`` must keep every contract on the real tree; and the contracts must bite: a copy of the
package with one forbidden import added (a circle, the journal drawing, a model importing its face, the
science importing Lightning) breaks the contract that forbids it. Function-level imports count.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[test]')")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root,  # reads root/pyproject.toml
                          capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_every_contract_is_kept() -> None:
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Contracts: 7 kept, 0 broken." in proc.stdout, proc.stdout


# (file to edit, line added inside a function, the contract that must then break)
VIOLATIONS = [
    ("fastpose/journal/db.py", "from fastpose.screens.format import fmt_value", "No import circles"),
    ("fastpose/journal/reader.py", "import rich.table", "The journal draws nothing"),
    ("fastpose/screens/comparison.py", "from fastpose.screens.terminal.console import lit", "Faces draw the screens"),
    ("fastpose/screens/terminal/run.py", "from fastpose.screens.markdown import daily_log_markdown", "Faces draw the screens"),
    ("fastpose/screens/web/pages.py", "from fastpose.screens.terminal.console import lit", "Faces draw the screens"),
    ("fastpose/screens/run.py", "from fastpose.screens.web.charts import line_chart", "Faces draw the screens"),
    ("fastpose/journal/access.py", "import starlette.responses", "The journal draws nothing"),
    ("fastpose/pose/model.py", "import pytorch_lightning", "The science knows nothing"),
    ("fastpose/screens/groups.py", "import torch", "torch-free"),
    ("fastpose/studies/plan.py", "from fastpose.training.runner import check_trainer_settings", "Layers"),
    ("fastpose/cli/compare.py", "from fastpose.pose.metrics import RotationAccuracy", "Only training brings"),
]


@pytest.mark.parametrize("path,line,contract", VIOLATIONS, ids=[v[0].split("/", 1)[1] for v in VIOLATIONS])
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, path: str, line: str, contract: str) -> None:
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "fastpose", copy / "fastpose", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    target = copy / path
    target.write_text(target.read_text() + f"\n\ndef _added_for_the_test() -> None:\n    {line}\n")
    proc = _lint(copy)
    assert proc.returncode != 0, proc.stdout[-3000:]
    broken = [ln for ln in proc.stdout.splitlines() if "BROKEN" in ln]
    assert any(contract in ln for ln in proc.stdout.split("Broken contracts")[-1].splitlines()), proc.stdout[-3000:]
    assert broken, proc.stdout[-3000:]
