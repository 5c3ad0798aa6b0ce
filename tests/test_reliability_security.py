"""Security: all SQL goes through bound parameters, and nothing a user types places a file outside
the journal home (or the file the user named, for ``journal export``).

Run names are validated (``[A-Za-z0-9][A-Za-z0-9_.-]{0,99}``), so quotes and SQL fragments reach the
database through notes, metric names, configs, labels, git diffs and tracebacks; each is stored verbatim
on SQLite and PostgreSQL and the tables stay whole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fastpose.config import ConfigError, RunConfig, validate_name
from fastpose.errors import FastposeError
from fastpose.journal import db
from fastpose.journal.git import GitState
from fastpose.journal.spool import SPOOL_NAME, find_spools
from fastpose.journal.store import JournalStore, MetricPoint

HOSTILE = [
    "x'); DROP TABLE runs;--",
    "Robert'); DROP TABLE notes; --",
    "' OR '1'='1",
    '" OR ""="',
    "1; DELETE FROM metrics WHERE 1=1",
    "%s %(id)s :id ? $1 \\' \\",
    "'; SELECT pg_sleep(5);--",
    "é \u202e ünïcode 角度 \U0001F600",
]


def test_hostile_text_is_stored_verbatim(journal_store: JournalStore) -> None:
    label = "26-11-29/01-45-SQL-SYNTH-resnet18-scratch'); DROP TABLE runs;--"
    git = GitState(is_repo=True, commit="a" * 40, branch="x'); DROP TABLE git_states;--", dirty=True,
                   diff="\n".join(HOSTILE), untracked=tuple(HOSTILE), message=HOSTILE[0])
    run = journal_store.start_run(name="SQL", label=label, config={"note": HOSTILE, HOSTILE[0]: HOSTILE[2]},
                                  command="fastpose train --name SQL --note \"x'); DROP TABLE runs;--\"", git=git)
    journal_store.log_metrics(run.id, [MetricPoint(f"val/{text}"[:200], float(i), 0, i) for i, text in enumerate(HOSTILE)])
    notes = [journal_store.add_note(text, run_id=run.id) for text in HOSTILE]
    journal_store.add_note(HOSTILE[1])  # a day note
    journal_store.crash(run.id, "ValueError'); DROP TABLE runs;--", HOSTILE[2], "\n".join(HOSTILE))

    got = journal_store.get_run(run.id)
    assert (got.label, got.config, got.error_type, got.error_message, got.traceback) == (
        label, {"note": HOSTILE, HOSTILE[0]: HOSTILE[2]}, "ValueError'); DROP TABLE runs;--", HOSTILE[2], "\n".join(HOSTILE))
    assert journal_store.git_state(run.id) == git
    assert [n.text for n in journal_store.notes(run.id)] == [n.text for n in notes] == [t.strip() for t in HOSTILE]
    assert [p.name for p in journal_store.metric_history(run.id)] == [f"val/{t}"[:200] for t in HOSTILE]
    assert journal_store.resolve(label).id == run.id
    counts = journal_store.counts()
    assert (counts["runs"], counts["notes"], counts["metrics"], counts["git_states"]) == (1, len(HOSTILE) + 1, len(HOSTILE), 1)


def test_cli_note_and_references_bind_parameters(journal_store: JournalStore, run_cli) -> None:  # noqa: ANN001
    run = journal_store.start_run(name="CLI_SQL", label="26-11-29/01-50-CLI_SQL-SYNTH-resnet18-scratch")
    on_run, on_day = HOSTILE[0], HOSTILE[3]
    run_cli("journal", "note", "CLI_SQL", on_run, check=True)
    run_cli("journal", "note", on_day, check=True)
    shown = json.loads(run_cli("journal", "--json", check=True).stdout)
    assert [n if isinstance(n, str) else n["text"] for n in shown[0]["notes"]] == [on_run]
    assert [n.text for n in journal_store.day_notes()] == [on_day]
    before = journal_store.counts()
    for args, message in (
        (["journal", "show", HOSTILE[2]], "no run matches"),
        (["journal", "note", HOSTILE[0], "hello"], "no run matches"),
        (["journal", "--name", HOSTILE[1]], "invalid run name"),
        (["journal", "--since", HOSTILE[0]], "--since"),
        (["journal", "--status", HOSTILE[2]], "--status"),
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    assert journal_store.counts() == before and before["runs"] == 1 and run.id == shown[0]["id"]


# ----------------------------------------------------------------------------------------------- paths

BAD_NAMES = ["../x", "../../etc/passwd", "a/b", "/tmp/abs", "..", ".", "x\x00y", "~root", "$(touch PWNED)",
             "a;b", "a b", "", "a" * 101, "a\\b", "-rf", "'quoted'"]
BAD_LABELS = ["../x", "26-11-29/../../../x", "/etc/x", "26-11-29//x", "26-11-29/./x", "a\\..\\b", "x/..", "a\nb"]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_hostile_run_names_and_labels_refused_before_writing(journal_store: JournalStore, tmp_path: Path) -> None:
    before = journal_store.counts()
    for name in BAD_NAMES:
        with pytest.raises(ConfigError, match="invalid run name"):
            validate_name(name)
        with pytest.raises(ConfigError):
            RunConfig.from_dict({"name": name}).validate()
        with pytest.raises(ConfigError, match="invalid run name"):
            journal_store.start_run(name=name, label="26-11-29/01-55-OK-SYNTH-resnet18-scratch")
    for label in BAD_LABELS:  # the run directory (and its spool) is <home>/runs/<label>: it must stay there
        with pytest.raises(FastposeError, match="invalid run label"):
            journal_store.start_run(name="OK", label=label)
        with pytest.raises(FastposeError, match="invalid run label"):
            db.run_dir_for(tmp_path / "home", label)
    assert journal_store.counts() == before
    assert db.run_dir_for(tmp_path / "home", "26-11-29/01-55-OK-SYNTH-resnet18-scratch-2") == (
        tmp_path / "home" / "runs" / "26-11-29" / "01-55-OK-SYNTH-resnet18-scratch-2").absolute()


def test_cli_hostile_names_write_nothing_anywhere(fp_home: Path, tmp_path: Path, run_cli) -> None:  # noqa: ANN001
    """``fastpose train --name ../x`` and friends: exit 2 before any file or row exists, here or above."""
    work = tmp_path / "work"
    work.mkdir()
    before = _tree(tmp_path)
    for name in ("../x", "../../escape", "a/b", "/tmp/fastpose-abs-escape"):
        proc = run_cli("train", "--name", name, "--epochs", "1", cwd=work)
        assert proc.returncode == 2 and "invalid run name" in proc.stderr, proc.stderr
        proc = run_cli("journal", "--name", name, cwd=work)
        assert proc.returncode == 2 and "invalid run name" in proc.stderr, proc.stderr
    assert _tree(tmp_path) == before
    assert not Path("/tmp/fastpose-abs-escape").exists()


def test_export_writes_only_the_named_file(fp_home: Path, tmp_path: Path, run_cli) -> None:  # noqa: ANN001
    run_cli("journal", "note", "x'); DROP TABLE runs;--", check=True)
    out = tmp_path / "out"
    out.mkdir()
    home_before = _tree(fp_home)
    run_cli("journal", "export", str(out / "log.md"), check=True)
    assert sorted(p.name for p in out.iterdir()) == ["log.md"]  # its temporary sibling is gone
    assert "x'); DROP TABLE runs;--" in (out / "log.md").read_text()
    assert _tree(fp_home) - home_before <= {"fastpose.db-wal", "fastpose.db-shm"}


def test_spools_are_only_looked_for_under_home_runs(fp_home: Path, tmp_path: Path) -> None:
    (fp_home / "runs" / "26-11-29" / "01-00-A-SYNTH-resnet18-scratch").mkdir(parents=True)
    inside = fp_home / "runs" / "26-11-29" / "01-00-A-SYNTH-resnet18-scratch" / SPOOL_NAME
    inside.write_text("")
    (tmp_path / SPOOL_NAME).write_text("")  # beside the home, not in it
    (fp_home / SPOOL_NAME).write_text("")
    assert find_spools(fp_home) == [inside]
    assert os.path.commonpath([find_spools(fp_home)[0], fp_home / "runs"]) == str(fp_home / "runs")
