"""Migrations of real old journals: each committed ``tests/journal_fixtures/rev_<REV>.db`` -> head.

On SQLite the fixture file itself (a copy) is opened and upgraded in place, as a user's journal would be. On
PostgreSQL a fresh database is upgraded to the fixture's revision, the fixture's rows are loaded into it,
and it is upgraded to head. Either way every row of every table the fixture holds must come out equal,
and the upgraded journal must keep working. A revision without a fixture fails the suite.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from fastpose.journal import db
from fastpose.journal.store import JournalStore, MetricPoint

FIXTURES = Path(__file__).parent / "journal_fixtures"
REVISIONS = sorted(rev.revision for rev in ScriptDirectory(str(db.migrations_dir())).walk_revisions())
FIXTURE_FILES = sorted(FIXTURES.glob("rev_*.db"))


def test_every_revision_has_a_fixture() -> None:
    """Add one with every new revision: see tests/journal_fixtures/README.md."""
    have = {p.stem.removeprefix("rev_") for p in FIXTURE_FILES}
    missing = [rev for rev in REVISIONS if rev not in have]
    assert not missing, (
        f"no journal fixture for revision(s) {missing}: add rows_<REV>() to tests/journal_fixtures/make_fixtures.py "
        f"and run `.venv/bin/python tests/journal_fixtures/make_fixtures.py {' '.join(missing)}`, then commit the .db"
    )
    assert not have - set(REVISIONS), f"fixtures for unknown revisions: {sorted(have - set(REVISIONS))}"
    for path in FIXTURE_FILES:
        assert db.sqlite_revision(path) == path.stem.removeprefix("rev_"), path


def _normal(value: Any) -> Any:
    """One spelling for both databases: times as aware UTC (SQLite keeps them naive), floats as floats."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return value


def _table_rows(engine: sa.Engine, only: dict[str, list[str]] | None = None) -> dict[str, dict[tuple, dict]]:
    """``{table: {primary key: {column: value}}}`` for every table (or the columns in ``only``)."""
    meta = sa.MetaData()
    meta.reflect(engine)
    out = {}
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            if table.name == "alembic_version" or (only is not None and table.name not in only):
                continue
            cols = [table.c[c] for c in (only[table.name] if only else table.c.keys())]
            pk = [c.name for c in table.primary_key.columns]
            rows = conn.execute(sa.select(*cols)).mappings()
            out[table.name] = {tuple(r[k] for k in pk): {k: _normal(v) for k, v in r.items()} for r in rows}
    return out


def _fixture_rows(path: Path) -> dict[str, dict[tuple, dict]]:
    engine = sa.create_engine(f"sqlite:///file:{path.absolute()}?mode=ro&uri=true")
    try:
        return _table_rows(engine)
    finally:
        engine.dispose()


def _check_survived(before: dict[str, dict[tuple, dict]], engine: sa.Engine) -> None:
    after = _table_rows(engine, {t: list(next(iter(rows.values()), {}).keys()) for t, rows in before.items()})
    for table, rows in before.items():
        assert rows, f"fixture table {table} is empty: fill it in make_fixtures.py"
        assert set(after[table]) == set(rows), f"{table}: rows lost or added by the upgrade"
        for key, row in rows.items():
            assert after[table][key] == row, f"{table} {key}: {row} became {after[table][key]}"


def _check_keeps_working(store: JournalStore, before: dict[str, dict[tuple, dict]]) -> None:
    counts = store.counts()
    assert counts["runs"] == len(before["runs"]) and counts["metrics"] == len(before["metrics"])
    # revision 0002 backfills final/best from the history of an older journal
    pairs = {(r["run_id"], r["name"]) for r in before["metrics"].values()}
    assert counts["metric_summaries"] == len(pairs)
    assert store.summaries(1)["val/rot_err_mean"] == (18.5, 18.5)
    assert store.resolve("MSE_BASELINE").id == 3 and store.resolve("PW_QLOSS", deleted="all").status == "crashed"
    assert [n.text for n in store.notes(2)] == ["x'); DROP TABLE runs;--"]
    store.log_metrics(1, [MetricPoint("val/rot_err_mean", 10.0, 3, 40)])
    store.add_note("after the upgrade", run_id=1)
    run = store.start_run(name="AFTER", label="26-11-29/00-00-AFTER-SYNTH-resnet18-scratch", parent_id=1)
    assert run.id > max(k[0] for k in before["runs"])
    assert store.summaries(1)["val/rot_err_mean"] == (10.0, 10.0)


@pytest.mark.parametrize("fixture", FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])
def test_old_journal_upgrades_to_head_keeping_every_row(
    fixture: Path, journal_db_url: str, tmp_path: Path
) -> None:
    revision = fixture.stem.removeprefix("rev_")
    before = _fixture_rows(fixture)
    digest = hashlib.sha256(fixture.read_bytes()).hexdigest()
    path = db.sqlite_path(journal_db_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fixture, path)
    else:
        _load_into_server(fixture, journal_db_url, revision)

    with JournalStore.open(journal_db_url) as store:  # upgrades to head (SQLite: after a backup)
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == db.HEAD_REVISION
        _check_survived(before, store.engine)
        _check_keeps_working(store, before)
    if path is not None and revision != db.HEAD_REVISION:
        backups = list(path.parent.glob("fastpose.db.bak-*"))
        assert len(backups) == 1 and db.sqlite_revision(backups[0]) == revision
    assert hashlib.sha256(fixture.read_bytes()).hexdigest() == digest  # the committed file is never touched


def _load_into_server(fixture: Path, url: str, revision: str) -> None:
    """A server database at ``revision`` holding the fixture's rows (ids kept, sequences moved past them)."""
    engine = db.create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(db.alembic_config(url, conn), revision)
        src = sa.create_engine(f"sqlite:///file:{fixture.absolute()}?mode=ro&uri=true")
        src_meta, dst_meta = sa.MetaData(), sa.MetaData()
        src_meta.reflect(src)
        dst_meta.reflect(engine)
        with src.connect() as s, engine.begin() as d:
            for table in src_meta.sorted_tables:
                if table.name == "alembic_version":
                    continue
                rows = [{k: _normal(v) for k, v in r.items()} for r in s.execute(sa.select(table)).mappings()]
                if table.name == "journal_identity":  # the migration wrote one of its own: take the fixture's
                    d.execute(dst_meta.tables[table.name].delete())
                if rows:
                    d.execute(dst_meta.tables[table.name].insert(), rows)
                if "id" in table.c and engine.dialect.name == "postgresql":
                    d.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table.name}), false)"
                    )
        src.dispose()
    finally:
        engine.dispose()
