"""journal rm / restore / gc / du on real journals (SQLite and PostgreSQL), real run directories on disk, the
real command line in subprocesses, and real SIGKILLs in the middle of gc."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from fastpose.journal.store import JournalStore, MetricPoint

CKPT = 200_000  # bytes of each fake checkpoint: big enough that sizes are not lost in block rounding


def make_run(store: JournalStore, home: Path, name: str, *, day: int = 1, status: str = "completed",
             periodic: int = 2, link_last_to_best: bool = False, tmp_file: bool = True, extra_files: int = 0,
             config: dict | None = None) -> int:
    """A finished run with a run directory as training leaves it: best, last, periodic checkpoints (and an
    interrupted write's temporary file), TensorBoard events, a log."""
    label = f"26-11-{day:02d}/10-00-{name}-SYNTHETIC-resnet18-scratch"
    run_dir = home / "runs" / label
    ckpt = run_dir / "checkpoints"
    ckpt.mkdir(parents=True)
    (run_dir / "tensorboard").mkdir()
    (ckpt / "best-epoch002.ckpt").write_bytes(os.urandom(CKPT))
    if link_last_to_best:
        os.link(ckpt / "best-epoch002.ckpt", ckpt / "last.ckpt")
    else:
        (ckpt / "last.ckpt").write_bytes(os.urandom(CKPT))
    for epoch in range(periodic):
        (ckpt / f"epoch{epoch:03d}.ckpt").write_bytes(os.urandom(CKPT))
    if tmp_file:
        (ckpt / "last.ckpt.tmp-4242").write_bytes(os.urandom(1000))
    (run_dir / "tensorboard" / "events.out.tfevents.1").write_bytes(os.urandom(30_000))
    (run_dir / "train.log").write_text("epoch 0\n" * 500)
    for i in range(extra_files):
        (run_dir / "tensorboard" / f"img{i:04d}.png").write_bytes(b"x" * 100)
    cfg = {"name": name, "loss": {"name": "mse"}, "train": {"seed": 0}, **(config or {})}
    run = store.start_run(name=name, label=label, config=cfg, run_dir=str(run_dir))
    store.log_metrics(run.id, [MetricPoint("val/10deg", 0.1 * day, 0, 10), MetricPoint("val/loss", 2.0 / day, 0, 10)])
    if status == "crashed":
        store.crash(run.id, "RuntimeError", "boom", "Traceback\nRuntimeError: boom")
    elif status != "running":
        store.finish(run.id, status=status)
    return run.id


def set_columns(store: JournalStore, run_id: int, **values) -> None:  # noqa: ANN003
    """Change a run's row the way the store writes it (through the ORM table's types)."""
    from fastpose.journal.models import Run

    with store.engine.begin() as conn:
        conn.execute(sa.update(Run.__table__).where(Run.__table__.c.id == run_id).values(**values))


def fastpose(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command line; a wide page, so no line of a screen is folded."""
    return subprocess.run([sys.executable, "-m", "fastpose", *args], capture_output=True, text=True,
                          timeout=timeout, env={**(os.environ if env is None else env), "COLUMNS": "250"})


def one_error_line(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def listed(*args: str) -> list[int]:
    proc = fastpose("journal", "--json", "--limit", "0", *args)
    assert proc.returncode == 0, proc.stderr
    return sorted(r["id"] for r in json.loads(proc.stdout))


def snapshot(store: JournalStore, home: Path) -> tuple:
    """Everything rm/gc may change: every row of the tables they write, and every file under the home's runs."""
    rows = store._fetch("SELECT id, status, deleted_at, reproduces_id FROM runs ORDER BY id")
    removals = store._fetch("SELECT * FROM gc_removals ORDER BY id")
    files = sorted((str(p.relative_to(home)), p.stat().st_size) for p in (home / "runs").rglob("*") if p.is_file())
    return store.counts(), rows, removals, files


# ----------------------------------------------------------------------------- rm and restore
def test_rm_hides_a_run_everywhere_and_restore_brings_it_back(journal_db_url: str, fp_home: Path) -> None:
    store = JournalStore.open(journal_db_url)
    a, b, c = (make_run(store, fp_home, n, day=d) for n, d in (("AAA", 1), ("BBB", 2), ("CCC", 3)))
    store.add_note("b was a mistake", run_id=b)
    b_dir = Path(store.get_run(b).run_dir)
    store.close()

    proc = fastpose("journal", "rm", "BBB")
    assert proc.returncode == 0, proc.stderr
    assert f"deleted run #{b} " in proc.stdout and "journal gc frees" in proc.stdout
    assert b_dir.is_dir() and (b_dir / "checkpoints" / "best-epoch002.ckpt").is_file()  # nothing on disk yet

    assert listed() == [a, c]
    assert listed("--deleted") == [b]
    assert "BBB" not in fastpose("journal").stdout
    assert "BBB" in fastpose("journal", "--deleted").stdout
    assert listed("--where", "loss.name=mse") == [a, c]
    for args in (["compare", "AAA", "BBB"], ["compare", "AAA", str(b)], ["journal", "show", "BBB"],
                 ["journal", "note", "BBB", "text"], ["journal", "tag", "BBB", "x"],
                 ["compare", "AAA", "CCC", "BBB", "--by", "loss.name"]):
        one_error_line(fastpose(*args), f"run #{b}", "is deleted", "journal restore")
    shown = fastpose("journal", "show", "--deleted", "BBB")
    assert shown.returncode == 0 and "by journal rm" in shown.stdout, shown.stderr
    export = fp_home.parent / "export.md"
    assert fastpose("journal", "export", str(export)).returncode == 0
    assert "BBB" not in export.read_text() and "AAA" in export.read_text()
    assert fastpose("compare", "AAA", "CCC").returncode == 0
    # a NAME resolves to its newest run that is not deleted
    store = JournalStore.open(journal_db_url)
    b2 = make_run(store, fp_home, "BBB", day=4)
    assert store.resolve("BBB").id == b2
    store.close()

    proc = fastpose("journal", "restore", str(b))
    assert proc.returncode == 0 and f"restored run #{b}" in proc.stdout, proc.stderr
    assert listed() == [a, b, c, b2] and listed("--deleted") == []
    assert fastpose("compare", "AAA", str(b)).returncode == 0


def test_rm_selections_combine_and_dry_run_changes_nothing(journal_db_url: str, fp_home: Path) -> None:
    store = JournalStore.open(journal_db_url)
    old_crash = make_run(store, fp_home, "OLDCRASH", day=1, status="crashed")
    make_run(store, fp_home, "NEWCRASH", day=2, status="crashed")
    qloss = make_run(store, fp_home, "QLOSS", day=3, config={"loss": {"name": "qloss"}})
    set_columns(store, old_crash, started_at=datetime.now(timezone.utc) - timedelta(days=40))
    before = snapshot(store, fp_home)
    store.close()

    dry = fastpose("journal", "rm", "--status", "crashed", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would delete run #") == 2 and "nothing changed" in dry.stdout
    store = JournalStore.open(journal_db_url)
    assert snapshot(store, fp_home) == before
    store.close()

    none = fastpose("journal", "rm", "--status", "diverged")
    assert none.returncode == 0 and "no runs match --status diverged; nothing deleted" in none.stdout

    proc = fastpose("journal", "rm", "--status", "crashed", "--before", "30d")  # both filters must hold
    assert proc.returncode == 0, proc.stderr
    assert listed("--deleted") == [old_crash]
    assert fastpose("journal", "rm", "--where", "loss.name=qloss").returncode == 0
    assert listed("--deleted") == sorted([old_crash, qloss])


def test_rm_of_a_sweep(journal_db_url: str, fp_home: Path) -> None:
    from fastpose.journal.sweeps import attach, open_sweep

    store = JournalStore.open(journal_db_url)
    sweep = open_sweep(store, "study", {"name": "study", "base": {}, "axes": {"train.seed": [0, 1]}}, None)
    cells = []
    for seed in (0, 1):
        run_id = make_run(store, fp_home, f"CELL{seed}", day=seed + 1)
        attach(store, run_id, sweep.id, json.dumps({"train.seed": seed}))
        cells.append(run_id)
    other = make_run(store, fp_home, "OTHER", day=5)
    store.close()
    assert fastpose("journal", "rm", "--sweep", "study").returncode == 0
    assert listed() == [other] and listed("--deleted") == cells
    assert listed("--sweep", "study") == []
    one_error_line(fastpose("compare", "--sweep", "study"), "no completed runs")  # its cells: not run yet


def test_rm_and_restore_bad_input_one_line_nothing_changed(journal_db_url: str, fp_home: Path) -> None:
    store = JournalStore.open(journal_db_url)
    a = make_run(store, fp_home, "AAA", day=1)
    make_run(store, fp_home, "BBB", day=2)
    running = make_run(store, fp_home, "LIVE", day=3, status="running")  # this test's own process: alive
    make_run(store, fp_home, "GONE", day=4)
    store.close()
    assert fastpose("journal", "rm", "GONE").returncode == 0
    store = JournalStore.open(journal_db_url)
    before = snapshot(store, fp_home)
    store.close()
    cases = [
        (["journal", "rm", "AAA", "NOPE"], ["no run matches 'NOPE'"]),
        (["journal", "rm", "AAA", "LIVE"], [f"run #{running}", "is running", "nothing was deleted"]),
        (["journal", "rm", "--where", "loss.name=mse"], ["is running", "nothing was deleted"]),
        (["journal", "rm", "GONE"], ["is deleted"]),
        (["journal", "rm"], ["name the runs to delete"]),
        (["journal", "rm", "AAA", "--status", "completed"], ["not both"]),
        (["journal", "rm", "--status", "exploded"], ["--status 'exploded'"]),
        (["journal", "rm", "--before", "yesterday"], ["--before 'yesterday'"]),
        (["journal", "rm", "--where", "loss.nam=mse"], ["unknown config key"]),
        (["journal", "rm", "--sweep", "nosuch"], ["no sweep 'nosuch'"]),
        (["journal", "restore", "AAA"], [f"run #{a}", "is not deleted"]),
        (["journal", "restore", "GONE", "NOPE"], ["no run matches 'NOPE'"]),
        (["journal", "show", "--deleted", "AAA"], ["no run matches 'AAA'"]),
    ]
    for args, words in cases:
        one_error_line(fastpose(*args), *words)
    store = JournalStore.open(journal_db_url)
    assert snapshot(store, fp_home) == before
    store.close()


# ----------------------------------------------------------------------------- gc
def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_gc_removes_deleted_runs_prunes_kept_ones_and_purges(journal_db_url: str, fp_home: Path) -> None:
    store = JournalStore.open(journal_db_url)
    keep = make_run(store, fp_home, "KEEP", day=1)
    linked = make_run(store, fp_home, "LINKED", day=2, link_last_to_best=True)
    crashed = make_run(store, fp_home, "CRASHED", day=3, status="crashed")
    gone = make_run(store, fp_home, "GONE", day=4)
    store.add_note("gone soon", run_id=gone)
    dirs = {i: Path(store.get_run(i).run_dir) for i in (keep, linked, crashed, gone)}
    store.close()
    assert fastpose("journal", "rm", "GONE").returncode == 0
    store = JournalStore.open(journal_db_url)
    before = snapshot(store, fp_home)
    store.close()

    dry = fastpose("journal", "gc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would remove the run directory of #{gone}" in dry.stdout
    assert f"would prune 3 checkpoint file(s) of #{keep}" in dry.stdout  # 2 periodic + the temporary file
    assert f"#{crashed}" not in dry.stdout  # crashed runs may be resumed: every checkpoint stays
    assert "would free" in dry.stdout and "nothing changed" in dry.stdout
    store = JournalStore.open(journal_db_url)
    assert snapshot(store, fp_home) == before
    store.close()

    proc = fastpose("journal", "gc")
    assert proc.returncode == 0, proc.stderr
    assert not dirs[gone].exists()
    assert tree(dirs[keep] / "checkpoints") == ["best-epoch002.ckpt", "last.ckpt"]
    assert tree(dirs[linked] / "checkpoints") == ["best-epoch002.ckpt", "last.ckpt"]
    assert len(tree(dirs[crashed] / "checkpoints")) == 5
    store = JournalStore.open(journal_db_url)
    assert store.get_run(gone).deleted_at is not None and store.notes(gone)  # rows stay without --purge
    pruned = store._fetch("SELECT path, done_at FROM gc_removals WHERE run_id = :id", {"id": keep})
    assert len(pruned) == 3 and all(r["done_at"] is not None for r in pruned)
    store.close()
    shown = fastpose("journal", "show", "KEEP")
    assert "pruned checkpoints epoch000.ckpt, epoch001.ckpt, last.ckpt.tmp-4242: removed by journal gc" in shown.stdout
    assert "disk" in shown.stdout

    assert "nothing to collect" in fastpose("journal", "gc").stdout  # idempotent
    restored = fastpose("journal", "restore", "GONE")
    assert restored.returncode == 0 and "its run directory was removed by journal gc" in restored.stdout
    assert fastpose("journal", "rm", "GONE").returncode == 0

    purge = fastpose("journal", "gc", "--purge")
    assert purge.returncode == 0 and f"purged the rows of run #{gone}" in purge.stdout, purge.stderr
    store = JournalStore.open(journal_db_url)
    assert [r["id"] for r in store._fetch("SELECT id FROM runs ORDER BY id")] == [keep, linked, crashed]
    assert not store._fetch("SELECT id FROM notes WHERE run_id = :id", {"id": gone})
    assert not store._fetch("SELECT id FROM metrics WHERE run_id = :id", {"id": gone})
    store.close()


def test_gc_frees_what_it_says_hard_links_once(journal_db_url: str, fp_home: Path) -> None:
    from fastpose.journal.du import directory_use

    store = JournalStore.open(journal_db_url)
    linked = make_run(store, fp_home, "LINKED", day=2, link_last_to_best=True, periodic=0, tmp_file=False)
    run_dir = Path(store.get_run(linked).run_dir)
    store.close()
    # --keep best: last.ckpt goes, but it is the same file as the best: nothing is freed by it
    proc = fastpose("journal", "gc", "--keep", "best")
    assert proc.returncode == 0 and "pruned 1 checkpoint file(s)" in proc.stdout and "(0 B)" in proc.stdout
    assert tree(run_dir / "checkpoints") == ["best-epoch002.ckpt"]
    store = JournalStore.open(journal_db_url)
    gone = make_run(store, fp_home, "GONE", day=3)
    size = directory_use(store.get_run(gone).run_dir).total
    store.close()
    assert fastpose("journal", "rm", "GONE").returncode == 0
    from fastpose.screens.format import fmt_bytes

    assert f"would free {fmt_bytes(size)}" in fastpose("journal", "gc", "--dry-run").stdout
    assert f"freed {fmt_bytes(size)}" in fastpose("journal", "gc").stdout


def test_gc_refusals_one_line_nothing_changed(journal_db_url: str, fp_home: Path) -> None:
    store = JournalStore.open(journal_db_url)
    make_run(store, fp_home, "KEEP", day=1)
    running = make_run(store, fp_home, "LIVE", day=2, status="running")  # this process: alive
    make_run(store, fp_home, "GONE", day=3)
    store.close()
    assert fastpose("journal", "rm", "GONE").returncode == 0
    store = JournalStore.open(journal_db_url)
    before = snapshot(store, fp_home)
    store.close()
    cases = [
        (["journal", "gc", "--keep", "last"], ["would remove the best checkpoint of run", "KEEP"]),
        (["journal", "gc", "--keep", "periodic"], ["would remove the best checkpoint"]),
        (["journal", "gc", "--keep", "bestest"], ["--keep 'bestest'", "unknown"]),
        (["journal", "gc", "--keep", ","], ["nothing to keep"]),
        (["journal", "gc", "--older", "a month"], ["--older 'a month'"]),
        (["journal", "gc", "--older", "30x"], ["--older '30x'"]),
        (["journal", "gc", "LIVE"], [f"run #{running}", "running (process"]),
        (["journal", "gc", "NOPE"], ["no run matches 'NOPE'"]),
    ]
    for args, words in cases:
        one_error_line(fastpose(*args), *words)
    store = JournalStore.open(journal_db_url)
    assert snapshot(store, fp_home) == before
    store.close()


def test_gc_leaves_a_deleted_run_alone_whose_process_is_alive_on_another_machine(
        journal_db_url: str, fp_home: Path) -> None:
    store = JournalStore.open(journal_db_url)
    far = make_run(store, fp_home, "FAR", day=1)
    store.close()
    assert fastpose("journal", "rm", "FAR").returncode == 0
    store = JournalStore.open(journal_db_url)
    # it came back: running on another machine, heartbeat fresh
    set_columns(store, far, status="running", host="gpu-node-7", pid=1, machine_id="another-machine",
                pid_namespace=1, heartbeat_at=datetime.now(timezone.utc))
    run_dir = Path(store.get_run(far).run_dir)
    before = snapshot(store, fp_home)
    store.close()
    proc = fastpose("journal", "gc", "--purge")
    assert proc.returncode == 0, proc.stderr
    assert f"left run #{far}" in proc.stdout and "running (process 1 on gpu-node-7)" in proc.stdout
    assert run_dir.is_dir()
    store = JournalStore.open(journal_db_url)
    assert snapshot(store, fp_home) == before
    store.close()
    one_error_line(fastpose("journal", "gc", "FAR"), "running (process 1 on gpu-node-7)")
    # once its heartbeat is older than the lost limit, it is lost and gc goes on
    env = {**os.environ, "FASTPOSE_LOST_AFTER": "0.5"}
    time.sleep(1.0)
    proc = fastpose("journal", "gc", "--purge", env=env)
    assert proc.returncode == 0 and f"purged the rows of run #{far}" in proc.stdout, proc.stdout + proc.stderr
    assert not run_dir.exists()


def test_gc_older_and_directories_outside_the_home(journal_db_url: str, fp_home: Path, tmp_path: Path) -> None:
    store = JournalStore.open(journal_db_url)
    recent = make_run(store, fp_home, "RECENT", day=1)
    elsewhere = make_run(store, fp_home, "ELSEWHERE", day=2)
    outside = tmp_path / "precious"
    os.rename(store.get_run(elsewhere).run_dir, outside)
    set_columns(store, elsewhere, run_dir=str(outside))
    recent_dir = Path(store.get_run(recent).run_dir)
    store.close()
    assert fastpose("journal", "rm", "RECENT", "ELSEWHERE").returncode == 0
    proc = fastpose("journal", "gc", "--older", "30d", "--purge")  # both deleted less than 30 days ago
    assert proc.returncode == 0 and proc.stdout.strip() == "nothing to collect", proc.stdout
    assert recent_dir.is_dir()
    proc = fastpose("journal", "gc")
    assert proc.returncode == 0, proc.stderr
    assert f"removed the run directory of #{recent}" in proc.stdout and not recent_dir.exists()
    assert f"left run #{elsewhere}" in proc.stdout and "outside" in proc.stdout
    assert outside.is_dir() and len(tree(outside)) > 3  # never removed: not under this home's runs/


# ----------------------------------------------------------------------------- kill -9
def check_invariant(store: JournalStore) -> None:
    """Every file the journal refers to is there, unless a gc_removals row names it: each kept run's best
    checkpoint and run directory, each live run's directory; a removal recorded done is really gone."""
    removals = store._fetch("SELECT run_id, kind, path, done_at FROM gc_removals")
    named = {Path(r["path"]) for r in removals}
    for row in removals:
        if row["done_at"] is not None:
            assert not os.path.lexists(row["path"]), row
    for run in store._runs("", deleted="all"):
        run_dir = Path(run.run_dir)
        if run_dir in named:
            assert run.deleted_at is not None, f"run #{run.id}: its directory is being removed but it is not deleted"
            continue
        assert run_dir.is_dir(), f"run #{run.id}: {run_dir} is missing and no gc_removals row names it"
        best = list((run_dir / "checkpoints").glob("best-*.ckpt"))
        assert best, f"run #{run.id} lost its best checkpoint"
        for name in ("last.ckpt", "epoch000.ckpt", "epoch001.ckpt", "last.ckpt.tmp-4242"):
            path = run_dir / "checkpoints" / name
            assert path.exists() or path in named, f"{path} is missing and no gc_removals row names it"


@pytest.mark.parametrize("point", ["marked", "removing", "removed", "done"])
def test_gc_killed_at_each_point_stays_consistent_and_a_second_gc_finishes(
        journal_db_url: str, fp_home: Path, point: str) -> None:
    store = JournalStore.open(journal_db_url)
    keep = make_run(store, fp_home, "KEEP", day=1)
    gone = make_run(store, fp_home, "GONE", day=2, extra_files=20)
    gone_dir = Path(store.get_run(gone).run_dir)
    store.close()
    assert fastpose("journal", "rm", "GONE").returncode == 0
    killed = fastpose("journal", "gc", "--purge", env={**os.environ, "FASTPOSE_FAULT": f"kill@gc:{point}"})
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stdout, killed.stderr)

    store = JournalStore.open(journal_db_url)
    check_invariant(store)
    pending = store._fetch("SELECT run_id, kind, done_at FROM gc_removals WHERE done_at IS NULL")
    if point in ("marked", "removing", "removed"):
        assert pending and pending[0]["run_id"] in (keep, gone)
    store.close()
    assert listed() == [keep]  # the deleted run stays hidden whatever the moment
    one_error_line(fastpose("journal", "restore", str(gone)), "journal gc is removing it")

    second = fastpose("journal", "gc", "--purge")
    assert second.returncode == 0, second.stderr
    store = JournalStore.open(journal_db_url)
    check_invariant(store)
    assert not store._fetch("SELECT id FROM gc_removals WHERE done_at IS NULL")
    assert [r.id for r in store._runs("", deleted="all")] == [keep]  # purged, even where the first gc never said so
    assert not gone_dir.exists()
    kept = Path(store.get_run(keep).run_dir) / "checkpoints"
    assert tree(kept) == ["best-epoch002.ckpt", "last.ckpt"]
    store.close()
    assert "nothing to collect" in fastpose("journal", "gc", "--purge").stdout


def test_gc_killed_at_random_moments(fp_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL from outside at random times while gc removes a few thousand files; after each kill the
    invariant holds, and the gc after the last one finishes the job."""
    url = f"sqlite:///{fp_home / 'fastpose.db'}"
    monkeypatch.setenv("FASTPOSE_JOURNAL_URL", url)
    store = JournalStore.open(url)
    keep = make_run(store, fp_home, "KEEP", day=1, periodic=6)
    gone = [make_run(store, fp_home, f"GONE{i}", day=2 + i, extra_files=4000) for i in range(3)]
    store.close()
    assert fastpose("journal", "rm", *(str(i) for i in gone)).returncode == 0
    rng = random.Random(23)
    kills = 0
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-m", "fastpose", "journal", "gc", "--purge"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.3, 3.0))  # the interpreter starts in ~0.5-1.5 s here; the removals follow
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)
        store = JournalStore.open(url)
        check_invariant(store)
        store.close()
    final = fastpose("journal", "gc", "--purge")
    assert final.returncode == 0, final.stderr
    store = JournalStore.open(url)
    check_invariant(store)
    assert [r.id for r in store._runs("", deleted="all")] == [keep]
    assert not store._fetch("SELECT id FROM gc_removals WHERE done_at IS NULL")
    store.close()
    assert kills >= 1  # at least one gc died mid-way (else the test proved nothing)


# ----------------------------------------------------------------------------- du
def test_du_per_run_per_sweep_total_hard_links_once(journal_db_url: str, fp_home: Path) -> None:
    from fastpose.journal.du import file_size
    from fastpose.journal.sweeps import attach, open_sweep

    store = JournalStore.open(journal_db_url)
    plain = make_run(store, fp_home, "PLAIN", day=1, tmp_file=False)
    linked = make_run(store, fp_home, "LINKED", day=2, link_last_to_best=True, tmp_file=False)
    sweep = open_sweep(store, "study", {"name": "study", "base": {}, "axes": {"train.seed": [0]}}, None)
    attach(store, linked, sweep.id, json.dumps({"train.seed": 0}))
    gone = make_run(store, fp_home, "GONE", day=3)
    logs = fp_home / "sweeps" / "study" / "logs"
    logs.mkdir(parents=True)
    (logs / "cell.log").write_text("x" * 5000)
    runs = {i: Path(store.get_run(i).run_dir) for i in (plain, linked, gone)}
    store.close()
    assert fastpose("journal", "rm", "GONE").returncode == 0

    def expected(run_dir: Path) -> dict[str, int]:
        seen, parts = set(), {"checkpoints": 0, "tensorboard": 0, "logs": 0, "other": 0}
        for p in sorted(run_dir.rglob("*")):
            st = os.lstat(p)
            if p.is_dir() or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            top = p.relative_to(run_dir).parts[0]
            part = top if top in ("checkpoints", "tensorboard") else "logs" if p.suffix == ".log" else "other"
            parts[part] += file_size(st)
        return parts

    proc = fastpose("journal", "du", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    by_id = {r["id"]: r for r in report["runs"]}
    assert set(by_id) == {plain, linked}  # the deleted run is not listed ...
    for run_id in (plain, linked):
        want = expected(runs[run_id])
        assert {p: by_id[run_id][p] for p in want} == want
        assert by_id[run_id]["bytes"] == sum(want.values())
    # best and last of LINKED are one file: counted once, so LINKED is one checkpoint smaller than PLAIN
    assert by_id[plain]["checkpoints"] - by_id[linked]["checkpoints"] == file_size(
        os.stat(runs[plain] / "checkpoints" / "last.ckpt"))
    assert report["deleted"]["runs"] == 1 and report["deleted"]["bytes"] == sum(expected(runs[gone]).values())
    (sweep_row,) = report["sweeps"]
    assert sweep_row["sweep"] == "study" and sweep_row["runs"] == 1
    assert sweep_row["bytes"] == by_id[linked]["bytes"] + file_size(os.stat(logs / "cell.log"))
    assert report["total"]["bytes"] == (by_id[plain]["bytes"] + sweep_row["bytes"] + report["deleted"]["bytes"])
    assert report["journal_bytes"] is None or report["journal_bytes"] > 0

    text = fastpose("journal", "du")
    assert text.returncode == 0 and "total:" in text.stdout and "hard links counted once" in text.stdout
    assert "deleted runs (journal gc frees this): 1 run(s)" in text.stdout
    only = json.loads(fastpose("journal", "du", "--sweep", "study", "--json").stdout)
    assert [r["id"] for r in only["runs"]] == [linked]
    shown = fastpose("journal", "show", "PLAIN")
    from fastpose.screens.format import fmt_bytes

    assert f"{fmt_bytes(by_id[plain]['bytes'])} (checkpoints {fmt_bytes(by_id[plain]['checkpoints'])}" in shown.stdout
    one_error_line(fastpose("journal", "du", "GONE"), "is deleted")
    one_error_line(fastpose("journal", "du", "PLAIN", "--sweep", "study"), "not both")
    one_error_line(fastpose("journal", "du", "--limit", "-1"), "--limit")


def test_housekeeping_commands_import_no_torch(fp_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{fp_home / 'fastpose.db'}"
    monkeypatch.setenv("FASTPOSE_JOURNAL_URL", url)
    store = JournalStore.open(url)
    make_run(store, fp_home, "AAA", day=1)
    make_run(store, fp_home, "BBB", day=2)
    store.close()
    for args in (["journal", "du"], ["journal", "rm", "AAA", "--dry-run"], ["journal", "gc", "--dry-run"],
                 ["journal", "--deleted"], ["compare", "AAA", "BBB", "--latex"], ["reproduce", "--help"]):
        code = ("import sys\nfrom fastpose.cli import run\nrc = run(%r)\n"
                "print(rc, [m for m in ('torch', 'pytorch_lightning', 'lightning') if m in sys.modules])") % args
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "0 []", (args, proc.stdout, proc.stderr)
