"""Sweeps under contention, sweep files that mean two things, and a journal down when a cell starts.

Everything goes through the real CLI in real processes, on real journals:

- claims: two ``fastpose sweep`` processes of one file started together (SQLite and PostgreSQL), a second
  one started while the first is mid-way, two cluster submissions at once (submitit's LocalExecutor), and
  many processes claiming the same cells at once (``claim_cell``, the one step that decides);
- refusals: a file where two axes (or two spellings) set one key, cells that would repeat, a value Lightning
  refuses, a changed ``[tune]`` table, more cells than a sweep plans: one line, exit 2, nothing written;
- a cell whose PostgreSQL journal (a private server the test stops and starts) is down when it starts.

Cells are 16 images of 32x32 in batches of 8, one epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TINY = """
name = "RS"
[data]
image_size = 32
train_size = 16
val_size = 8
[train]
epochs = 1
batch_size = 8
log_images = 0
"""

GRID = TINY + """
[sweep]
id = "{sweep_id}"
"loss.name" = [{losses}]
"train.seed" = [{seeds}]
"""


def grid(tmp: Path, sweep_id: str, losses: str = '"mse", "qloss"', seeds: str = "0, 1", extra: str = "") -> Path:
    path = tmp / f"{sweep_id}.toml"
    path.write_text(GRID.format(sweep_id=sweep_id, losses=losses, seeds=seeds) + extra)
    return path


def env(**extra: str) -> dict[str, str]:
    """This test's environment ($FASTPOSE_HOME and $FASTPOSE_JOURNAL_URL from the fixtures) plus ``extra``."""
    out = {k: v for k, v in os.environ.items() if k != "FASTPOSE_FAULT"}
    out.update(PYTHONUNBUFFERED="1", **extra)
    return out


def start(*args: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fastpose", *args], env=env(**extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def fastpose(*args: str, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastpose", *args], env=env(**extra), capture_output=True,
                          text=True, timeout=timeout)


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return proc.returncode, out, err


def journal(url: str):  # noqa: ANN201 - a JournalStore
    from fastpose.journal.store import JournalStore

    return JournalStore.open(url)


def cell_attempts(home: Path, sweep_id: str) -> dict[str, int]:
    """How many times the sweeps started each cell: the ``$ fastpose ...`` lines of its log."""
    logs = home / "sweeps" / sweep_id / "logs"
    return {p.stem: p.read_text().count("\n$ ") for p in sorted(logs.glob("*.log"))}


def check_once_each(url: str, sweep_id: str, names: list[str]) -> None:
    """Exactly one run per cell, completed, and no claim left behind."""
    from fastpose.journal.sweeps import cell_claims, cell_runs, get_sweep

    with journal(url) as store:
        runs = store.list_runs()
        sweep = get_sweep(store, sweep_id)
        cells = cell_runs(store, sweep.id)
        claims = cell_claims(store, sweep.id)
    assert sorted(r.name for r in runs) == sorted(names), [(r.id, r.name, r.status) for r in runs]
    assert all(r.status == "completed" for r in runs)
    assert len({c.cell for c in cells}) == len(names) == len(cells)
    assert claims == {}


# ------------------------------------------------------------------------------------------- claims


@pytest.mark.slow
def test_two_sweeps_of_one_file_started_together_train_each_cell_once(journal_db_url: str, fp_home: Path,
                                                                       tmp_path: Path) -> None:
    path = grid(tmp_path, "twice")
    first, second = start("sweep", str(path), "--jobs", "2"), start("sweep", str(path), "--jobs", "2")
    results = [finish(first), finish(second)]
    for code, out, err in results:
        assert code == 0, out[-3000:] + err[-3000:]
        assert "4/4 completed" in out, out
    names = ["RS-mse-seed0", "RS-mse-seed1", "RS-qloss-seed0", "RS-qloss-seed1"]
    check_once_each(journal_db_url, "twice", names)
    assert cell_attempts(fp_home, "twice") == {n: 1 for n in names}
    # each sweep ran some cells itself and waited for the others, which it shows completed, never running
    for code, out, err in results:
        assert "running" not in out, out


@pytest.mark.slow
def test_a_sweep_started_while_another_is_mid_way_takes_the_cells_left_and_shows_the_rest_finished(
    journal_db_url: str, fp_home: Path, tmp_path: Path
) -> None:
    path = grid(tmp_path, "later", losses='"mse", "qloss", "geodesic"', seeds="0")
    slow = {"FASTPOSE_FAULT": "sleep:1.5@step:0"}  # 2 steps: each cell trains for ~3 s after its start-up
    first = start("sweep", str(path), "--jobs", "1", **slow)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # the first sweep has started its first cell's run
            with journal(journal_db_url) as store:
                if store.list_runs():
                    break
            assert first.poll() is None, finish(first)
            time.sleep(0.5)
        second = start("sweep", str(path), "--jobs", "1", **slow)
        results = [finish(first), finish(second)]
    finally:
        first.kill()
    for code, out, err in results:
        assert code == 0, out[-3000:] + err[-3000:]
        assert "3/3 completed" in out and "running" not in out, out
    names = ["RS-mse-seed0", "RS-qloss-seed0", "RS-geodesic-seed0"]
    check_once_each(journal_db_url, "later", names)
    assert cell_attempts(fp_home, "later") == {n: 1 for n in names}
    # the second sweep waited for the first one's cell and reports it completed, with its run
    with journal(journal_db_url) as store:
        mse = store.resolve("RS-mse-seed0")
    line = next(line for line in results[1][1].splitlines() if "RS-mse-seed0" in line)
    assert "completed" in line and f"#{mse.id}" in line, results[1][1]
    assert f"RS-mse-seed0: held by sweep pid {first.pid} on " in results[1][2], results[1][2]  # and said so


@pytest.mark.slow
def test_two_cluster_submissions_of_one_sweep_train_each_cell_once(tmp_path: Path, fp_home: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """--launcher slurm twice at once (submitit's LocalExecutor standing in for the cluster): every cell gets
    two jobs; the job that finds its cell claimed ends at once, and its sweep waits for the other's result."""
    from conftest import drop_pg_database, fresh_pg_database, pg_admin_engine

    admin = pg_admin_engine()
    url = fresh_pg_database(admin)
    monkeypatch.setenv("FASTPOSE_JOURNAL_URL", url)
    try:
        path = grid(tmp_path, "cluster", seeds="0", extra="[slurm]\ntime = 10\ncpus_per_task = 1\n")
        cluster = {"FASTPOSE_SUBMITIT_CLUSTER": "local"}
        procs = [start("sweep", str(path), "--launcher", "slurm", **cluster) for _ in range(2)]
        results = [finish(p) for p in procs]
        for code, out, err in results:
            assert code == 0, out[-3000:] + err[-3000:]
            assert "2/2 completed" in out, out
        check_once_each(url, "cluster", ["RS-mse-seed0", "RS-qloss-seed0"])
        assert cell_attempts(fp_home, "cluster") == {"RS-mse-seed0": 1, "RS-qloss-seed0": 1}
    finally:
        drop_pg_database(admin, url)
        admin.dispose()


CLAIMER = textwrap.dedent(
    """
    import json, random, sys, time
    from pathlib import Path
    from fastpose.journal.store import JournalStore
    from fastpose.journal.sweeps import claim_cell
    url, sweep_id, go, cells, job = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
    random.shuffle(cells)
    store = JournalStore.open(url)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.01)
    won = [c for c in cells if claim_cell(store, sweep_id, c, job=job or None)[1]]
    print(json.dumps(won), flush=True)
    sys.stdin.read()  # hold the claims (stay alive) until the test closes stdin
    """
)


def _seeds(count: int) -> list[str]:
    return [json.dumps({"train.seed": i}) for i in range(count)]


def _claimers(url: str, sweep_id: int, go: Path, cells: list[str], n: int, job: str = "") -> list[subprocess.Popen]:
    """``n`` processes that each claim ``cells`` (shuffled) once ``go`` exists, print the cells they won, and
    hold their claims until their stdin closes."""
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, url, str(sweep_id), str(go), json.dumps(cells), job],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return procs


def test_many_processes_claiming_the_same_cells_at_once_win_each_exactly_once(journal_db_url: str,
                                                                              tmp_path: Path) -> None:
    """The claim is one atomic step on both databases: 6 processes race for 16 cells; each cell has one
    winner. A claim outlives no holder: once they exit, the cells are taken over; released, they are free."""
    from fastpose.journal.sweeps import cell_claims, claim_cell, open_sweep, release_claims

    with journal(journal_db_url) as store:
        sweep = open_sweep(store, "race", {"name": "R", "base": {}, "axes": {"train.seed": list(range(16))}}, None)
    go = tmp_path / "go"
    procs = _claimers(journal_db_url, sweep.id, go, _seeds(16), 6)
    go.touch()
    won = []
    try:
        for proc in procs:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            won += json.loads(line)
        assert sorted(won) == sorted(_seeds(16))  # each cell won by one process
        with journal(journal_db_url) as store:
            held = claim_cell(store, sweep.id, won[0])
            assert held[1] is False and held[0].pid in {p.pid for p in procs}  # live holders keep their cells
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(timeout=60)
    with journal(journal_db_url) as store:
        assert len(cell_claims(store, sweep.id)) == 16
        taken = [claim_cell(store, sweep.id, cell) for cell in won]  # their holders are gone: taken over
        assert all(ours for _, ours in taken) and {c.pid for c, _ in taken} == {os.getpid()}
        assert release_claims(store, [c.token for c, _ in taken]) == 16
        assert cell_claims(store, sweep.id) == {}


def test_a_requeued_cluster_job_takes_its_own_claim_back(journal_db_url: str, tmp_path: Path) -> None:
    """A claim names its job: the same job started again (requeued after preemption) takes it over while the
    old process may still look alive; any other process waits."""
    from fastpose.journal.sweeps import claim_cell, open_sweep

    with journal(journal_db_url) as store:
        sweep = open_sweep(store, "requeue", {"name": "R", "base": {}, "axes": {"train.seed": [0]}}, None)
    go = tmp_path / "go"
    go.touch()
    (holder,) = _claimers(journal_db_url, sweep.id, go, _seeds(1), 1, job="81723_4")
    try:
        assert json.loads(holder.stdout.readline()) == [json.dumps({"train.seed": 0})]
        cell = json.dumps({"train.seed": 0})
        with journal(journal_db_url) as store:
            other, ours = claim_cell(store, sweep.id, cell, job="99_1")
            assert not ours and other.job == "81723_4" and other.holder.startswith("job 81723_4 (pid ")
            again, ours = claim_cell(store, sweep.id, cell, job="81723_4")
            assert ours and again.pid == os.getpid()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["local", "slurm"])
def test_a_cell_held_by_a_process_that_is_killed_is_taken_over_by_the_waiting_sweep(
    launcher: str, tmp_path: Path, fp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim never outlives its holder: the sweep runs the free cell, waits on the held one (saying who
    holds it), and runs it once its holder is SIGKILLed. Locally on SQLite; as cluster jobs on PostgreSQL."""
    from fastpose.journal.sweeps import cell_key, open_sweep
    from fastpose.studies.spec import load_sweep

    admin = url = None
    extra, cluster = "", {}
    if launcher == "slurm":
        from conftest import fresh_pg_database, pg_admin_engine

        admin = pg_admin_engine()
        url = fresh_pg_database(admin)
        monkeypatch.setenv("FASTPOSE_JOURNAL_URL", url)
        extra, cluster = "[slurm]\ntime = 10\ncpus_per_task = 1\n", {"FASTPOSE_SUBMITIT_CLUSTER": "local"}
    else:
        url = f"sqlite:///{fp_home / 'fastpose.db'}"
        fp_home.mkdir()
    try:
        path = grid(tmp_path, "killed", seeds="0", extra=extra)
        spec = load_sweep(path)
        with journal(url) as store:
            sweep = open_sweep(store, spec.id, spec.to_json(), spec.source)
        go = tmp_path / "go"
        go.touch()
        mse = cell_key({"loss.name": "mse", "train.seed": 0})
        (holder,) = _claimers(url, sweep.id, go, [mse], 1)
        assert json.loads(holder.stdout.readline()) == [mse]
        proc = start("sweep", str(path), "--launcher", launcher, **cluster)
        try:
            def qloss_done() -> bool:
                with journal(url) as store:
                    return [(r.name, r.status) for r in store.list_runs()] == [("RS-qloss-seed0", "completed")]

            _wait_for(qloss_done, proc, "the free cell")
            time.sleep(3)  # the sweep goes on waiting for the held cell
            assert proc.poll() is None
            holder.kill()
            holder.wait(timeout=60)
            code, out, err = finish(proc)
        finally:
            proc.kill()
            holder.kill()
        assert code == 0, out[-3000:] + err[-3000:]
        assert "2/2 completed" in out, out
        check_once_each(url, "killed", ["RS-mse-seed0", "RS-qloss-seed0"])
    finally:
        if admin is not None:
            from conftest import drop_pg_database

            drop_pg_database(admin, url)
            admin.dispose()


# ------------------------------------------------------------------------------------------- refusals


def _bad(tmp: Path, sweep: str, tune: str = "") -> str:
    return TINY + "[sweep]\n" + sweep + ("\n[tune]\n" + tune if tune else "")


def _weights(tmp: Path, name: str) -> str:
    """A file that exists (validate() checks --weights only for that)."""
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return str(path)


MEANS_TWO_THINGS = {
    "an axis and a variant axis": (
        '"loss.name" = ["mse", "qloss"]\narm = [{ "loss.name" = "mse" }, { "loss.name" = "geodesic" }]\n', "",
        "axes 'loss.name' and 'arm' both set loss.name"),
    "two variant axes": (
        'a = [{ "loss.name" = "mse" }, { "loss.name" = "qloss" }]\nb = [{ "loss.name" = "geodesic", "train.lr" = 0.01 }]\n',
        "", "axes 'a' and 'b' both set loss.name"),
    "two spellings of an axis": ('"loss.name" = ["mse", "qloss"]\nloss.name = ["geodesic"]\n', "",
                                 "loss.name is set twice"),
    "two spellings as a table": ('"loss.name" = ["mse"]\nloss = { name = ["qloss"] }\n', "", "loss.name is set twice"),
    "two spellings in a variant table": ('arm = [{ "loss.name" = "mse", loss = { name = "qloss" } }]\n', "",
                                         "loss.name is set twice"),
    "two spellings in [tune]": ('"train.seed" = [0]\n', '"loss.rot_weight" = [0.1]\nloss.rot_weight = [1.0]\n',
                                "[tune]: loss.rot_weight is set twice"),
    "one value twice as int and float": ('"train.lr" = [1, 1.0]\n', "",
                                         "cell train.lr=1.0 trains the same config as cell train.lr=1"),
    "a tuning value twice": ('"train.seed" = [0]\n', '"loss.rot_weight" = [1, 1.0]\n', "trains the same config as"),
    "a variant that changes nothing": ('arm = [{ "loss.name" = "qloss" }, { "loss.eps" = 0.01 }]\n', "",
                                       "trains the same config as"),
    "two cells one run name": ('"model.weights" = ["{w1}", "{w2}"]\n', "", "gets the same run name"),
    "values too long for the journal": ('"model.weights" = ["{long}"]\n', "", "more than the 1000 the journal keeps"),
    "an accelerator Lightning does not know": ('"train.accelerator" = ["cpu", "tpux"]\n', "",
                                               "cell train.accelerator=tpux: Lightning refuses --accelerator 'tpux'"),
    "a strategy Lightning does not know": ('"train.seed" = [0]\n"train.strategy" = ["ddpx"]\n', "",
                                           "Lightning refuses --accelerator 'auto' --devices '1' --strategy 'ddpx'"),
    "a seed outside numpy's range": ('"train.seed" = [0, 4294967296]\n', "",
                                     "--seed must be an integer from 0 to 4294967295 (train.seed), got 4294967296"),
    "too many cells": ("".join(f'"{k}" = [{", ".join(str(i) for i in range(1, 11))}]\n' for k in (
        "train.seed", "data.seed", "train.lr", "train.weight_decay", "loss.eps", "loss.mask_weight",
        "loss.rot_weight", "loss.trans_weight", "loss.size_weight", "train.batch_size")), "",
        "10,000,000,000 cells to plan (10 x 10 x 10 x 10 x 10 x 10 x 10 x 10 x 10 x 10), more than the 10,000"),
}


@pytest.mark.parametrize("case", sorted(MEANS_TWO_THINGS))
@pytest.mark.parametrize("dry", [False, True], ids=["run", "dry-run"])
def test_a_sweep_file_that_means_two_things_or_that_runs_would_refuse_is_refused_before_anything_is_written(
    case: str, dry: bool, tmp_path: Path, fp_home: Path
) -> None:
    sweep, tune, message = MEANS_TWO_THINGS[case]
    deep = "/".join(["d" * 200] * 5)
    for key, name in (("{w1}", "w 1.pt"), ("{w2}", "w_1.pt"), ("{long}", f"{deep}/w.pt")):
        if key in sweep:
            sweep = sweep.replace(key, _weights(tmp_path, name))
    path = tmp_path / "bad.toml"
    path.write_text(_bad(tmp_path, sweep, tune))
    proc = fastpose("sweep", str(path), *(["--dry-run"] if dry else []), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert not fp_home.exists()  # no journal, no sweep row, no cell file


def test_the_same_sweep_with_another_tune_grid_is_refused_and_the_journal_keeps_the_first(
    journal_db_url: str, fp_home: Path, tmp_path: Path
) -> None:
    from fastpose.journal.sweeps import get_sweep, open_sweep
    from fastpose.studies.spec import load_sweep

    first = grid(tmp_path, "tuned", seeds="0", extra='[tune]\n"loss.rot_weight" = [0.1, 1.0]\n')
    spec = load_sweep(first)
    with journal(journal_db_url) as store:  # what the first invocation wrote before its cells
        open_sweep(store, spec.id, spec.to_json(), spec.source)
        before = store.counts()
    for changed in ('[tune]\n"loss.rot_weight" = [0.1, 3.0]\n',  # another grid
                    '[tune]\n"loss.rot_weight" = [0.1, 1.0]\n"train.epochs" = 2\n',  # another tuning budget
                    ""):  # no tuning any more
        path = grid(tmp_path, "tuned", seeds="0", extra=changed)
        for dry in ([], ["--dry-run"]):
            proc = fastpose("sweep", str(path), *dry)
            if dry:  # a dry run reads no journal: it shows the file's cells
                assert proc.returncode == 0, proc.stderr
                continue
            assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            assert "sweep 'tuned' already exists in the journal with another [tune] table" in proc.stderr
    with journal(journal_db_url) as store:
        assert store.counts() == before
        assert get_sweep(store, "tuned").spec["tune"] == {"axes": {"loss.rot_weight": [0.1, 1.0]}, "set": {}}
    assert not (fp_home / "sweeps").exists()


def test_a_sweep_of_default_trainer_settings_never_imports_lightning(tmp_path: Path) -> None:
    """Lightning is asked only about settings other than one CPU process (which it accepts anywhere)."""
    path = grid(tmp_path, "light")
    code = textwrap.dedent(
        f"""
        import sys
        from fastpose.cli import run
        assert run(["sweep", {str(path)!r}, "--dry-run"]) == 0
        heavy = [m for m in sys.modules if m.split(".")[0] in ("torch", "lightning", "pytorch_lightning")]
        assert not heavy, heavy[:5]
        print("OK")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=env(FASTPOSE_HOME=str(tmp_path / "home")))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------- journal down


@pytest.fixture
def private_pg(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A PostgreSQL server of this test's own (its own directory and port): stopping it disturbs no one."""
    from test_reliability_spool import PrivateServer, _free_port, _pg_bindir

    if _pg_bindir() is None:
        if os.environ.get("FASTPOSE_REQUIRE_PG") == "1":
            pytest.fail("FASTPOSE_REQUIRE_PG=1 but no PostgreSQL server binaries under /usr/lib/postgresql")
        pytest.skip("PostgreSQL server binaries not installed (.ci/start-postgres installs them)")
    root = Path(f"/tmp/fp-sweep-{os.getpid()}-{_free_port()}")  # short: the socket path has a length limit
    server = PrivateServer(root)
    try:
        yield server
    finally:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - already stopped by the test
            pass
        shutil.rmtree(root, ignore_errors=True)


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, (what, finish(proc))
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_cell_whose_journal_is_down_at_its_start_is_retried_and_else_reported_failed_to_start(
    private_pg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FASTPOSE_HOME", str(home))
    monkeypatch.setenv("FASTPOSE_JOURNAL_URL", private_pg.url)
    # Each cell sleeps 3 s after its start-up, before it opens the journal: the test stops the server then.
    late = {"FASTPOSE_FAULT": "sleep:3@start"}

    def started(name: str, n: int = 1):  # noqa: ANN202 - the sweep has started the cell n times
        log = home / "sweeps" / path.stem / "logs" / f"{name}.log"
        return lambda: log.is_file() and log.read_text().count("\n$ ") >= n

    # 1. Down for a few seconds: the cell is started again within $FASTPOSE_BUSY_TIMEOUT_S and completes.
    path = grid(tmp_path, "outage", losses='"mse"', seeds="0")
    proc = start("sweep", str(path), FASTPOSE_BUSY_TIMEOUT_S="90", **late)
    try:
        _wait_for(started("RS-mse-seed0"), proc, "the cell's start")
        private_pg.stop()
        _wait_for(started("RS-mse-seed0", 2), proc, "the cell's second start")
        private_pg.start()
        code, out, err = finish(proc)
    finally:
        proc.kill()
    assert code == 0, out[-3000:] + err[-3000:]
    assert "1/1 completed" in out, out
    log = (home / "sweeps" / "outage" / "logs" / "RS-mse-seed0.log").read_text()
    assert "error: cannot open journal" in log and log.count("\n$ ") >= 2, log
    check_once_each(private_pg.url, "outage", ["RS-mse-seed0"])

    # 2. Down for good: each cell is retried for $FASTPOSE_BUSY_TIMEOUT_S, then reported failed to start (never
    # running); the sweep exits 1. Back up, nothing was journaled for them, no claim blocks the next sweep.
    path = grid(tmp_path, "down", losses='"mse", "qloss"', seeds="0")
    proc = start("sweep", str(path), FASTPOSE_BUSY_TIMEOUT_S="4", **late)
    try:
        _wait_for(started("RS-mse-seed0"), proc, "the first cell's start")
        private_pg.stop()
        code, out, err = finish(proc, timeout=300)  # retries end after $FASTPOSE_BUSY_TIMEOUT_S, not never
    finally:
        proc.kill()
    assert code == 1, out[-3000:] + err[-3000:]
    rows = [line for line in out.splitlines() if line.startswith("│ RS-")]  # the table's rows; the notes follow it
    assert len(rows) == 2 and all("failed to start" in row for row in rows), out
    assert "RS-mse-seed0: " in out and "RS-qloss-seed0: the journal stayed unreachable" in out, out
    assert "running" not in out and "2 failed to start" in err, out + err
    private_pg.start()
    from fastpose.journal.sweeps import cell_runs, get_sweep

    with journal(private_pg.url) as store:
        assert [r.name for r in store.list_runs()] == ["RS-mse-seed0"]  # part 1's only
        assert cell_runs(store, get_sweep(store, "down").id) == []
    again = fastpose("sweep", str(path), FASTPOSE_BUSY_TIMEOUT_S="30")
    assert again.returncode == 0 and "2/2 completed" in again.stdout, again.stdout[-3000:] + again.stderr[-3000:]
