"""A corrupt journal file: garbage or a truncated/damaged SQLite file at ``<home>/fastpose.db``.

Every journal command answers with one clear line and exit code 2, and the file stays byte-for-byte the
same (hash before and after); no backup or new journal is made beside it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fastpose.journal.store import JournalStore, MetricPoint

COMMANDS = [
    ["journal"],
    ["journal", "--json"],
    ["journal", "note", "a day note"],
    ["journal", "note", "A", "a run note"],
    ["journal", "show", "A"],
]


def _real_journal(tmp_path: Path) -> bytes:
    """The bytes of a real journal (WAL checkpointed) with enough rows to span many pages."""
    url = f"sqlite:///{tmp_path / 'real.db'}"
    with JournalStore.open(url) as store:
        run = store.start_run(name="A", label="26-11-29/01-00-A-SYNTH-resnet18-scratch")
        store.log_metrics(run.id, [MetricPoint("val/loss", float(i), i, i) for i in range(3000)])
        for _ in range(100):
            store.add_note("n" * 200, run_id=run.id)
    return (tmp_path / "real.db").read_bytes()


CASES = {
    "binary garbage": lambda real: os.urandom(40_000),
    "text": lambda real: b"these are my handwritten notes, not a database\n" * 50,
    "cut inside the header": lambda real: real[:50],
    "truncated to half": lambda real: real[: len(real) // 2],
    "zeroed last pages": lambda real: real[:-8192] + b"\0" * 8192,
}
MESSAGES = {
    "binary garbage": "is not a SQLite database",
    "text": "is not a SQLite database",
    "cut inside the header": "is damaged (only 50 bytes",
    "truncated to half": "is damaged (truncated",
    "zeroed last pages": "is damaged (database disk image is malformed)",
}


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_journal_one_line_exit_2_untouched(case: str, fp_home: Path, tmp_path: Path, run_cli) -> None:  # noqa: ANN001
    content = CASES[case](_real_journal(tmp_path))
    fp_home.mkdir(parents=True)
    path = fp_home / "fastpose.db"
    path.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    for args in COMMANDS:
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and MESSAGES[case] in lines[0], (args, proc.stderr)
        assert str(path) in lines[0]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{args} changed the journal file"
    leftovers = sorted(p.name for p in fp_home.iterdir() if p.name not in ("fastpose.db", "fastpose.db.lock"))
    assert not [n for n in leftovers if ".bak-" in n], leftovers  # no backup of a damaged file


def test_store_open_on_truncated_journal_raises_journal_error(fp_home: Path, tmp_path: Path) -> None:
    from fastpose.journal.db import JournalError

    real = _real_journal(tmp_path)
    fp_home.mkdir(parents=True)
    (fp_home / "fastpose.db").write_bytes(real[: len(real) // 3])
    with pytest.raises(JournalError, match="damaged"):
        JournalStore.open()
    assert (fp_home / "fastpose.db").read_bytes() == real[: len(real) // 3]
