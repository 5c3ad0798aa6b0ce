"""What the test suite itself tells whoever runs it: tests that need a PostgreSQL server, where there is none,
are one line of the summary saying how to run them (not a SKIPPED line each)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_postgresql_skips_are_one_summary_line_saying_how_to_run_them() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTPOSE_TEST_PG_URL", "FASTPOSE_REQUIRE_PG", "FASTPOSE_JOURNAL_BACKENDS")}
    # test files whose PostgreSQL cases skip in a fixture (journal_store) and in a test body (pg_admin_engine)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                           "tests/test_journal_store.py", "tests/test_reliability_disk.py",
                           "-k", "resolve or dropped_or_recreated_postgresql"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1, proc.stdout[-3000:]
    assert "FASTPOSE_TEST_PG_URL=" in skipped[0] and "to run them" in skipped[0]
    total = re.search(r"(\d+) skipped", proc.stdout)
    assert total and int(total.group(1)) >= 2 and f"SKIPPED [{total.group(1)}]" in skipped[0], proc.stdout[-2000:]
