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


# ---------------------------------------------------------------------------- journal

# Every journal test runs on both backends (one parametrisation): SQLite, and PostgreSQL on the server named by
# $FASTPOSE_TEST_PG_URL (.ci/run starts one with .ci/start-postgres), a fresh database per test. Without that
# server the PostgreSQL cases skip with the reason, except under $FASTPOSE_REQUIRE_PG=1 (CI), where a missing or
# unreachable server fails them. $FASTPOSE_JOURNAL_BACKENDS (e.g. "sqlite") narrows the list for a quick local run.
def _journal_backends() -> list[str]:
    explicit = os.environ.get("FASTPOSE_JOURNAL_BACKENDS")
    if explicit:
        return [b.strip() for b in explicit.split(",") if b.strip()]
    return ["sqlite", "postgresql"]


JOURNAL_BACKENDS = _journal_backends()
_PG_UNREACHABLE: dict[str, str] = {}  # base URL -> why it could not be reached (asked once per session)
_PG_HOW = ("set FASTPOSE_TEST_PG_URL=postgresql+psycopg://USER@HOST:PORT/DB (a server where USER may create "
           "databases; .ci/start-postgres starts one) to run them, or FASTPOSE_JOURNAL_BACKENDS=sqlite to leave "
           "them out")
_PG_SKIPS = ("no PostgreSQL server", "PostgreSQL at ")  # how every PostgreSQL skip's reason begins


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    """Every test skipped for want of a PostgreSQL server is reported at one place with one reason, so the
    short summary (``-ra``) folds them into one line: ``SKIPPED [N] tests/conftest.py: ... how to run them``."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if reason.startswith(_PG_SKIPS):
            why = reason.split(":", 1)[0] if reason.startswith("PostgreSQL at ") else "no PostgreSQL server"
            report.longrepr = (__file__, pg_admin_engine.__code__.co_firstlineno, f"PostgreSQL tests: {why}; {_PG_HOW}")


def pg_admin_engine():  # noqa: ANN201 - sqlalchemy Engine on $FASTPOSE_TEST_PG_URL, or fail/skip
    """An AUTOCOMMIT engine on the test server; fails (REQUIRE_PG=1) or skips when there is none."""
    base = os.environ.get("FASTPOSE_TEST_PG_URL")
    required = os.environ.get("FASTPOSE_REQUIRE_PG") == "1"
    if not base:
        if required:
            pytest.fail("FASTPOSE_REQUIRE_PG=1 but FASTPOSE_TEST_PG_URL is not set (.ci/start-postgres prints it)")
        pytest.skip("no PostgreSQL server: set FASTPOSE_TEST_PG_URL (see .ci/start-postgres)")
    import sqlalchemy as sa

    if base not in _PG_UNREACHABLE:
        probe = sa.create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        try:
            with probe.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            _PG_UNREACHABLE[base] = ""
        except Exception as exc:  # noqa: BLE001 - any reason the server cannot be used
            _PG_UNREACHABLE[base] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        finally:
            probe.dispose()
    reason = _PG_UNREACHABLE[base]
    if reason:
        shown = sa.engine.make_url(base).render_as_string(hide_password=True)
        if required:
            pytest.fail(f"FASTPOSE_REQUIRE_PG=1 but PostgreSQL at {shown} is unreachable: {reason}")
        pytest.skip(f"PostgreSQL at {shown} is unreachable: {reason}")
    return sa.create_engine(base, isolation_level="AUTOCOMMIT")


def fresh_pg_database(admin, prefix: str = "fastpose_t") -> str:  # noqa: ANN001
    """Create an empty database on the test server; returns its URL (drop it with ``drop_pg_database``)."""
    import uuid


    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return admin.url.set(database=name).render_as_string(hide_password=False)


def drop_pg_database(admin, url: str) -> None:  # noqa: ANN001
    import sqlalchemy as sa

    name = sa.engine.make_url(url).database
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=JOURNAL_BACKENDS)
def journal_db_url(request: pytest.FixtureRequest, fp_home: Path, monkeypatch: pytest.MonkeyPatch):
    """URL of a fresh, empty journal database, also exported as $FASTPOSE_JOURNAL_URL for subprocesses."""
    if request.param == "sqlite":
        url = f"sqlite:///{fp_home / 'fastpose.db'}"
        monkeypatch.setenv("FASTPOSE_JOURNAL_URL", url)
        yield url
        return
    if request.param != "postgresql":
        raise ValueError(f"unknown journal backend {request.param!r}")
    admin = pg_admin_engine()
    url = fresh_pg_database(admin)
    monkeypatch.setenv("FASTPOSE_JOURNAL_URL", url)
    try:
        yield url
    finally:
        drop_pg_database(admin, url)
        admin.dispose()


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


# ---------------------------------------------------------------------------- training


def make_git_repo(path: Path) -> str:
    """A git repository at ``path`` with one commit; returns ``git rev-parse HEAD``."""
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    git = ["git", "-c", "user.name=fastpose tests", "-c", "user.email=tests@fastpose.invalid", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    (path / "experiment.txt").write_text("the code a run is trained with\n")
    subprocess.run([*git, "add", "experiment.txt"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "initial"], cwd=path, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def git_repo(tmp_path: Path) -> tuple[Path, str]:
    """(path, HEAD sha) of a fresh temporary git repository with one commit."""
    repo = tmp_path / "repo"
    return repo, make_git_repo(repo)


# ---------------------------------------------------------------- pose science (tests/test_pose_*.py)
@pytest.fixture(scope="session")
def synthetic_batch() -> dict:
    """A collated batch of 8 synthetic 64x64 samples (seed 0), rendered once per session."""
    import torch

    from fastpose.pose.data.synthetic import SyntheticPoseDataset

    ds = SyntheticPoseDataset(8, image_size=64, seed=0)
    return torch.utils.data.default_collate([ds[i] for i in range(len(ds))])


# ---------------------------------------------------------------- fuzzing (tests/test_reliability_fuzz.py)
# "ci" (the default): a fixed seed and a bounded number of examples, so CI is repeatable and short.
# `pytest tests/test_reliability_fuzz.py --hypothesis-profile=long` hunts ten times longer with fresh seeds.
try:
    from hypothesis import HealthCheck, settings

    _FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])
    settings.register_profile("ci", max_examples=100, derandomize=True, print_blob=True, **_FUZZ)
    settings.register_profile("long", max_examples=1000, derandomize=False, print_blob=True, **_FUZZ)
    settings.load_profile("ci")
except ImportError:  # hypothesis is in the test extras; without it the fuzz tests skip
    pass
