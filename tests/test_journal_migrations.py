"""Journal schema: migrations empty -> head, old data -> head (rows kept, backup), schema == ORM, refusals."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from fastpose.errors import FastposeError
from fastpose.journal import db
from fastpose.journal.models import Base
from fastpose.journal.store import JournalStore, MetricPoint


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _revision(path: Path) -> str | None:
    return db.sqlite_revision(path)


def test_single_head_matches_code() -> None:
    script = ScriptDirectory(str(db.migrations_dir()))
    assert script.get_heads() == [db.HEAD_REVISION]
    assert len(list(script.walk_revisions())) >= 2  # an upgrade path really is exercised


def test_migrations_dir_found_in_source_tree_and_wheel_layout() -> None:
    root = Path(db.__file__).resolve().parents[2]
    assert db.migrations_dir() == root / "migrations"
    pyproject = (root / "pyproject.toml").read_text()
    assert '"migrations" = "fastpose/_migrations"' in pyproject  # the wheel ships them where db looks


def test_empty_to_head(journal_db_url: str) -> None:
    store = JournalStore.open(journal_db_url)
    try:
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == db.HEAD_REVISION
            tables = set(sa.inspect(conn).get_table_names())
        assert {"runs", "git_states", "metrics", "metric_summaries", "notes", "alembic_version"} <= tables
    finally:
        store.close()
    if db.sqlite_path(journal_db_url):
        assert not list(Path(db.sqlite_path(journal_db_url)).parent.glob("*.bak-*"))  # nothing to back up


def _describe(diff: object) -> str:
    return repr(diff)


def test_migrated_schema_equals_orm_models(journal_db_url: str) -> None:
    """If this fails, write a revision: see migrations/env.py for the one-line alembic command."""
    store = JournalStore.open(journal_db_url)
    try:
        with store.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(ctx, Base.metadata)
    finally:
        store.close()
    assert not diffs, (
        "the migrated journal differs from fastpose/journal/models.py:\n"
        + "\n".join(f"  {_describe(d)}" for d in diffs)
        + "\nfix: add a revision in migrations/versions/ (autogenerate: "
        "alembic.command.revision(fastpose.journal.db.alembic_config(URL), 'msg', autogenerate=True, "
        "rev_id='000N')) and bump HEAD_REVISION in fastpose/journal/db.py"
    )


def _journal_at_first_revision(path: Path) -> None:
    """A journal as an older fastpose left it: schema 0001, with runs, git, metrics and notes."""
    url = f"sqlite:///{path}"
    engine = db._migration_engine(url)
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(url, conn), "0001")
        conn.execute(sa.text(
            "INSERT INTO runs (id, name, label, status, created_at, started_at, ended_at, config) VALUES "
            "(1, 'OLD', '26-11-20/10-00-OLD-SYNTH-resnet18-scratch', 'completed', "
            "'2026-11-20 10:00:00.000000', '2026-11-20 10:00:00.000000', '2026-11-20 11:00:00.000000', '{}'),"
            "(2, 'OLD2', '26-11-21/10-00-OLD2-SYNTH-resnet18-scratch', 'crashed', "
            "'2026-11-21 10:00:00.000000', '2026-11-21 10:00:00.000000', NULL, '{}')"
        ))
        conn.execute(sa.text(
            "INSERT INTO git_states (run_id, is_repo, dirty, untracked) VALUES (1, 0, 0, '[]')"
        ))
        for i, (value, mp) in enumerate([(3.0, 0.1), (1.0, 0.5), (2.0, 0.4)]):
            conn.execute(sa.text(
                "INSERT INTO metrics (run_id, name, epoch, step, value, logged_at) VALUES "
                f"(1, 'val/loss', {i}, {i * 10}, {value}, '2026-11-20 10:0{i}:00.000000'),"
                f"(1, 'val/degree_mAP_10', {i}, {i * 10}, {mp}, '2026-11-20 10:0{i}:00.000000')"
            ))
        conn.execute(sa.text(
            "INSERT INTO notes (run_id, text, created_at) VALUES "
            "(1, 'old run note', '2026-11-20 12:00:00.000000'), (NULL, 'old day note', '2026-11-20 13:00:00.000000')"
        ))
    engine.dispose()


def test_first_revision_with_data_upgrades_keeping_rows_and_backup(fp_home: Path) -> None:
    fp_home.mkdir(parents=True)
    path = fp_home / "fastpose.db"
    _journal_at_first_revision(path)
    assert _revision(path) == "0001"

    store = JournalStore.open(f"sqlite:///{path}")
    try:
        assert _revision(path) == db.HEAD_REVISION
        counts = store.counts()
        assert counts["runs"] == 2 and counts["metrics"] == 6 and counts["notes"] == 2 and counts["git_states"] == 1
        # revision 0002 backfilled final/best from the history
        assert store.summaries(1) == {"val/loss": (2.0, 1.0), "val/degree_mAP_10": (0.4, 0.5)}
        assert store.resolve("OLD").label == "26-11-20/10-00-OLD-SYNTH-resnet18-scratch"
        assert [n.text for n in store.notes(1)] == ["old run note"]
        store.log_metrics(1, [MetricPoint("val/loss", 0.5, 3, 30)])  # and it keeps working
        assert store.summaries(1)["val/loss"] == (0.5, 0.5)
    finally:
        store.close()

    backups = list(fp_home.glob("fastpose.db.bak-*"))
    assert len(backups) == 1, backups
    assert _revision(backups[0]) == "0001"
    with sqlite3.connect(backups[0]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 6

    JournalStore.open(f"sqlite:///{path}").close()  # at head: no second backup
    assert len(list(fp_home.glob("fastpose.db.bak-*"))) == 1


def test_newer_than_code_is_refused_and_untouched(fp_home: Path) -> None:
    fp_home.mkdir(parents=True)
    path = fp_home / "fastpose.db"
    JournalStore.open(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    conn.close()
    before = _sha(path)
    files_before = sorted(p.name for p in fp_home.iterdir())

    (fp_home / "fastpose.db.lock").unlink()
    files_before = sorted(p.name for p in fp_home.iterdir())
    with pytest.raises(FastposeError, match="newer than this fastpose"):
        JournalStore.open(f"sqlite:///{path}")
    assert _sha(path) == before
    assert not list(fp_home.glob("*.bak-*"))
    assert sorted(p.name for p in fp_home.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        n for n in files_before if not n.endswith(("-wal", "-shm"))
    ]


def test_newer_than_code_refused_by_cli_listing(fp_home: Path, run_cli) -> None:  # noqa: ANN001
    fp_home.mkdir(parents=True)
    path = fp_home / "fastpose.db"
    JournalStore.open(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    before = _sha(path)
    for args in (["journal"], ["journal", "note", "hello"]):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and "newer than this fastpose" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert _sha(path) == before


def test_not_a_database_is_refused_and_untouched(fp_home: Path, run_cli) -> None:  # noqa: ANN001
    fp_home.mkdir(parents=True)
    path = fp_home / "fastpose.db"
    path.write_text("these are my handwritten notes, not a database\n" * 20)
    before = _sha(path)
    with pytest.raises(FastposeError, match="not a SQLite database"):
        JournalStore.open(f"sqlite:///{path}")
    proc = run_cli("journal")
    assert proc.returncode == 2 and "not a SQLite database" in proc.stderr
    assert _sha(path) == before
    assert sorted(p.name for p in fp_home.iterdir()) == ["fastpose.db"]


def test_foreign_sqlite_database_is_refused(fp_home: Path) -> None:
    fp_home.mkdir(parents=True)
    path = fp_home / "fastpose.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE recipes (id INTEGER PRIMARY KEY)")
    conn.close()
    before = _sha(path)
    with pytest.raises(FastposeError, match="not a fastpose journal"):
        JournalStore.open(f"sqlite:///{path}")
    assert _sha(path) == before


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(journal_store: JournalStore) -> None:
    if not journal_store._is_sqlite:
        pytest.skip("SQLite pragmas")
    with journal_store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.BUSY_TIMEOUT_MS


def test_status_check_constraint(journal_store: JournalStore) -> None:
    run = journal_store.start_run(name="CK", label="26-11-28/10-00-CK-SYNTH-resnet18-scratch")
    with pytest.raises(sa.exc.IntegrityError):
        with journal_store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE runs SET status = 'exploded' WHERE id = :id"), {"id": run.id})
    assert journal_store.get_run(run.id).status == "running"


def test_installed_layout_migrates_without_source_tree(tmp_path: Path) -> None:
    """The wheel puts migrations/ at fastpose/_migrations (pyproject force-include); mimic that install."""
    import shutil
    import subprocess
    import sys

    root = Path(db.__file__).resolve().parents[2]
    site = tmp_path / "site"
    shutil.copytree(root / "fastpose", site / "fastpose", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "migrations", site / "fastpose" / "_migrations", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import fastpose.journal.db as d, fastpose.journal.store as s\n"
        "print(d.migrations_dir())\n"
        "st = s.JournalStore.open(); print(st.counts()['runs']); st.close()\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "FASTPOSE_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(site / "fastpose" / "_migrations"), "0"]
    assert _revision(tmp_path / "home" / "fastpose.db") == db.HEAD_REVISION
