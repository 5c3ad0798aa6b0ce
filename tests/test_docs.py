"""The docs describe the system as it is, for its users: a README that is a short manual (at most 250 lines,
a Quickstart of exactly two commands), links that resolve, and no tracker numbers or history anywhere in the
tree (code, comments, docstrings, docs, test names). History lives in commit messages and CHANGELOG.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A tracker reference: "issue 12", "Issue #12", "issues 12". ("run #12" is a run id, what the screens show.)
# Addresses of other projects' issues (https://github.com/.../issues/47) are citations, not our tracker.
TRACKER = re.compile(r"(?i)(?<!/)\bissues? ?#?\d+\b")
PROCESS = re.compile(r"(?i)\b(the review(?:'s|er)?|this session|helper session|an earlier session)\b")


def _tracked(*suffixes: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / f for f in out.splitlines() if f.endswith(suffixes) and (ROOT / f).is_file()]


def test_the_readme_is_a_short_manual_with_a_two_command_quickstart() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250, len(text.splitlines())
    quick = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = quick.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(commands) == 2, commands
    assert "fastpose train" in commands[0] and "pytest" in commands[1], commands


def test_no_tracker_numbers_or_process_words_anywhere_in_the_tree() -> None:
    found = []
    for path in _tracked(".py", ".md", ".toml", ".txt", ".sh", ".cfg", ".ini", ".html", ".js", ".css") + [ROOT / ".ci" / "run"]:
        if path.name in ("CHANGELOG.md", "test_docs.py") or "golden" in path.parts:
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if TRACKER.search(line) or PROCESS.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not found, "\n".join(found)


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, broken
