"""Hardening with real processes: a spool belongs to one journal, export never destroys anything, `lost` is
decided per machine and PID namespace, user text is printed literally, and a journal that cannot be read,
written or locked gives one line instead of a traceback (file modes, read-only and full file systems, locks).

Some cases need root (another PID namespace, a private mount namespace, dropping the capability that lets
root ignore file modes); elsewhere they skip with the reason.
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

from fastpose.journal.spool import SPOOL_NAME, read_spool
from fastpose.journal.store import JournalStore, MetricPoint

ROOT = os.geteuid() == 0
LABEL = "26-11-29/09-{:02d}-{}-SYNTH-resnet18-scratch"
TINY = ["--epochs", "1", "--train-size", "4", "--val-size", "4", "--batch-size", "2", "--image-size", "32",
        "--no-progress"]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, FASTPOSE_HOME=str(home), COLUMNS="200", **extra)
    env.pop("FASTPOSE_DEBUG", None)
    if "FASTPOSE_JOURNAL_URL" not in extra:
        env.pop("FASTPOSE_JOURNAL_URL", None)
    return env


def _cli(env: dict, *args: str, cwd: Path | None = None, prefix: list[str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), sys.executable, "-m", "fastpose", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def _one_error_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


LOCKER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")  # holds the write lock until stdin closes
    print("locked", flush=True)
    sys.stdin.read()
    conn.execute("ROLLBACK")
    """
)


class _Lock:
    """Another process holding the SQLite journal's write lock."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"

    def __enter__(self) -> _Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


# ------------------------------------------------------------------------------------- a spool, one journal

WRITER = textwrap.dedent(
    """
    import sys
    from fastpose.journal.spool import SpoolingJournal
    from fastpose.journal.store import MetricPoint
    url, run_id, run_dir, journal_id = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    journal = SpoolingJournal.for_run(run_dir, url, busy_timeout_s=0.3, write_attempts=1, journal_id=journal_id)
    for epoch in range(3):
        journal.log_metrics(run_id, [MetricPoint("val/loss", 3.0 - epoch, epoch, 10 * epoch)])
        journal.heartbeat(run_id, epoch=epoch, step=10 * epoch)
    journal.add_note("written while the team journal was locked", run_id=run_id)
    print("finished:", journal.finish(run_id, epoch=2, step=20), flush=True)
    """
)


def _snapshot(url: str) -> dict:
    with JournalStore.open(url) as store:
        runs = [(r.id, r.name, r.status, r.epoch, r.step, r.ended_at) for r in store.list_runs()]
        return {"counts": store.counts(), "runs": runs,
                "metrics": [(p.name, p.value, p.epoch) for r in runs for p in store.metric_history(r[0])]}


def test_a_spool_is_replayed_only_into_the_journal_it_was_written_for(tmp_path: Path) -> None:
    home = tmp_path / "home"
    local_url = f"sqlite:///{home / 'fastpose.db'}"   # journal B: the home's own SQLite journal
    team_url = f"sqlite:///{tmp_path / 'team.db'}"     # journal A: where the run really belongs
    with JournalStore.open(local_url) as local:  # an unrelated run with the same id 1 (the would-be victim)
        victim = local.start_run(name="LOCAL", label=LABEL.format(0, "LOCAL"),
                                 run_dir=str(home / "runs" / LABEL.format(0, "LOCAL")))
        local.log_metrics(victim.id, [MetricPoint("val/loss", 7.0, 0, 5)])
        local.finish(victim.id, epoch=0, step=5)
        local_id = local.journal_id()
    run_dir = home / "runs" / LABEL.format(1, "TEAM")
    with JournalStore.open(team_url) as team:
        run = team.start_run(name="TEAM", label=LABEL.format(1, "TEAM"), run_dir=str(run_dir))
        team_id = team.journal_id()
    assert run.id == victim.id == 1 and team_id != local_id

    with _Lock(tmp_path / "team.db"):  # journal A unreachable: every write of the run is spooled
        child = subprocess.run([sys.executable, "-c", WRITER, team_url, str(run.id), str(run_dir), team_id],
                               capture_output=True, text=True, timeout=120)
    assert child.returncode == 0 and "finished: None" in child.stdout, child.stderr
    spool = run_dir / SPOOL_NAME
    lines = read_spool(spool)
    assert len(lines) == 8 and {r["journal"] for r in lines} == {team_id}
    spooled = spool.read_bytes()

    local_before = _snapshot(local_url)
    for _ in range(2):  # B's listing, twice: B untouched, the spool kept, one line saying why
        proc = _cli(_env(home), "journal")
        assert proc.returncode == 0, proc.stderr
        waiting = [line for line in proc.stderr.splitlines() if "waits for" in line]
        assert len(waiting) == 1 and team_id in waiting[0] and local_id in waiting[0], proc.stderr
        assert _snapshot(local_url) == local_before and spool.read_bytes() == spooled

    proc = _cli(_env(home, FASTPOSE_JOURNAL_URL=team_url), "journal", "--json")  # A's listing: replayed, once
    assert proc.returncode == 0 and "replayed 8 journal writes" in proc.stderr, proc.stderr
    (shown,) = json.loads(proc.stdout)
    assert shown["status"] == "completed" and shown["final_metrics"]["val/loss"] == 1.0 and shown["epoch"] == 2
    assert not spool.exists()
    after = _snapshot(team_url)
    assert after["counts"]["metrics"] == 3 and after["counts"]["notes"] == 1
    again = _cli(_env(home, FASTPOSE_JOURNAL_URL=team_url), "journal")
    assert "replayed" not in again.stderr and _snapshot(team_url) == after
    assert _snapshot(local_url) == local_before


def test_spools_behind_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    home, outside = tmp_path / "home", tmp_path / "elsewhere" / "26-11-29" / "09-00-X"
    outside.mkdir(parents=True)
    (outside / SPOOL_NAME).write_text('{"id":"x","kind":"add_note","run_id":null,"at":"2026-11-29T09:00:00+00:00",'
                                      '"args":{"text":"from outside"}}\n')
    (home / "runs").mkdir(parents=True)
    (home / "runs" / "26-11-29").symlink_to(outside.parent, target_is_directory=True)
    proc = _cli(_env(home), "journal", "--json")
    assert proc.returncode == 0 and "replayed" not in proc.stderr, proc.stderr
    assert (outside / SPOOL_NAME).exists() and json.loads(proc.stdout) == []


# ------------------------------------------------------------------------------------- export


def test_twenty_concurrent_exports_to_one_path_all_succeed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for i in range(3):
        assert _cli(_env(home), "journal", "note", f"note {i}").returncode == 0
    target = tmp_path / "lab.md"
    procs = [subprocess.Popen([sys.executable, "-m", "fastpose", "journal", "export", "--force", str(target)],
                              env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(20)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results
    text = target.read_text()
    assert text.startswith("# fastpose journal") and all(f"note {i}" in text for i in range(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "lab.md"]  # no temporary file left behind


# ------------------------------------------------------------------------------------- lost, per PID namespace

LIVE_RUN = textwrap.dedent(
    """
    import sys, threading, time
    from fastpose.journal.store import JournalStore
    store = JournalStore.open(sys.argv[1])
    run = store.start_run(name="CONTAINED", label=sys.argv[2])
    print(run.id, run.pid, run.pid_namespace, flush=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.wait(0.2):
        store.heartbeat(run.id)
    """
)


@pytest.mark.skipif(not ROOT or not shutil.which("unshare"), reason="needs root and unshare for a PID namespace")
def test_a_live_run_in_another_pid_namespace_is_never_marked_lost(fp_home: Path) -> None:
    url = f"sqlite:///{fp_home / 'fastpose.db'}"
    JournalStore.open(url).close()
    # sh is the namespace's pid 1 and the run pid 2: a pid that means something else (or nothing) out here
    child = subprocess.Popen(["unshare", "--pid", "--fork", "sh", "-c", f'"{sys.executable}" -c "$0" "$1" "$2"; :',
                              LIVE_RUN, url, LABEL.format(2, "CONTAINED")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        run_id, pid, ns = child.stdout.readline().split()
        ours = os.stat("/proc/self/ns/pid").st_ino
        if ns == "None" or int(ns) == ours:
            pytest.skip("unshare did not give the run a PID namespace of its own")
        env = _env(fp_home, FASTPOSE_LOST_AFTER="5")
        for _ in range(6):  # six polls while it heartbeats: never lost
            proc = _cli(env, "journal", "--json")
            (shown,) = json.loads(proc.stdout)
            assert shown["status"] == "running", (pid, shown)
            time.sleep(0.3)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    time.sleep(5.5)  # gone, and its heartbeat is older than the limit: lost, said by the heartbeat
    (shown,) = json.loads(_cli(_env(fp_home, FASTPOSE_LOST_AFTER="5"), "journal", "--json").stdout)
    assert shown["status"] == "lost" and "no heartbeat" in shown["error_message"]


# ------------------------------------------------------------------------------------- terminal-safe output

NASTY = "see [/bold] and [red]x[/] :smile: \x1b[2J\x1b]0;pwned\x07 \u202eevil\r"


def test_markup_and_escape_sequences_are_printed_literally(fp_home: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{fp_home / 'fastpose.db'}"
    with JournalStore.open(url) as store:
        runs = []
        for i, root in enumerate(("/data/nocs[v2]", "/data/nocs")):
            run = store.start_run(
                name=f"INJ{i}", label=LABEL.format(3 + i, f"INJ{i}"), command=f"fastpose train --strategy [/x] {NASTY}",
                config={"data": {"data_root": root}, "train": {"strategy": "[/x]"}, "note": NASTY},
            )
            store.crash(run.id, "RuntimeError", NASTY, f"Traceback (most recent call last):\n  {NASTY}\nRuntimeError: [/x]")
            runs.append(run)
    env = _env(fp_home)
    assert _cli(env, "journal", "note", "INJ0", NASTY).returncode == 0
    outputs = {
        "journal": _cli(env, "journal"),
        "show": _cli(env, "journal", "show", "INJ0"),
        "compare": _cli(env, "compare", "INJ0", "INJ1"),
    }
    export = tmp_path / "lab.md"
    outputs["export"] = _cli(env, "journal", "export", str(export))
    for name, proc in outputs.items():
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (name, proc.stderr)
        for shown in (proc.stdout, export.read_text() if name == "export" else ""):
            assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown, name
    for name in ("journal", "show"):
        out = outputs[name].stdout
        assert "see [/bold] and [red]x[/] :smile: \\x1b[2J\\x1b]0;pwned\\x07 \\u202eevil" in out, (name, out)
    assert "\\x1b[2J" in export.read_text() and "[/bold]" in export.read_text()
    assert "[/x]" in outputs["show"].stdout
    cmp = outputs["compare"].stdout
    assert "'/data/nocs[v2]'" in cmp and "'/data/nocs'" in cmp, cmp  # two different values, both shown
    # --json stays exact: the note comes back byte for byte (JSON escapes the control characters itself)
    listed = json.loads(_cli(env, "journal", "--json").stdout)
    assert NASTY.strip() in [n for r in listed for n in r["notes"]]


# ------------------------------------------------------------------------------------- unreadable, unwritable


def _no_dac() -> list[str]:
    """Run as root without the capability to ignore file modes (so mode 000 and 0444 mean what they say)."""
    if not ROOT:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("needs setpriv to drop CAP_DAC_OVERRIDE as root")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


@pytest.fixture
def small_journal(fp_home: Path) -> Path:
    url = f"sqlite:///{fp_home / 'fastpose.db'}"
    with JournalStore.open(url) as store:
        run = store.start_run(name="KEEP", label=LABEL.format(10, "KEEP"))
        store.log_metrics(run.id, [MetricPoint("val/loss", 1.5, 0, 1)])
        store.finish(run.id)
        dead = store.start_run(name="DEAD", label=LABEL.format(11, "DEAD"))  # its process is long gone
    with JournalStore.open(url) as store, store.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE runs SET pid = 999999999 WHERE id = {dead.id}")
    return fp_home


def test_unreadable_journal_is_one_line(small_journal: Path, tmp_path: Path) -> None:
    db = small_journal / "fastpose.db"
    db.chmod(0o000)
    try:
        before = db.stat()
        proc = _cli(_env(small_journal), "journal", cwd=tmp_path, prefix=_no_dac())
        _one_error_line(proc, "cannot read journal", "Permission denied")
        assert db.stat().st_mtime_ns == before.st_mtime_ns
    finally:
        db.chmod(0o644)


def test_read_only_journal_lists_but_refuses_writes(small_journal: Path, tmp_path: Path) -> None:
    db = small_journal / "fastpose.db"
    with JournalStore.open(f"sqlite:///{db}") as store:
        store.engine.dispose()
    for side in small_journal.glob("fastpose.db-*"):
        side.unlink()
    db.chmod(0o444)
    small_journal.chmod(0o555)
    prefix, env = _no_dac(), _env(small_journal)
    try:
        digest = db.read_bytes()
        listing = _cli(env, "journal", cwd=tmp_path, prefix=prefix)
        assert listing.returncode == 0 and "KEEP" in listing.stdout and "DEAD" in listing.stdout, listing.stderr
        assert "read-only" in listing.stderr and "Traceback" not in listing.stderr  # the dead run: not marked
        _one_error_line(_cli(env, "journal", "note", "KEEP", "a note", cwd=tmp_path, prefix=prefix), "read-only")
        _one_error_line(_cli(env, "train", "--name", "RO", *TINY, cwd=tmp_path, prefix=prefix))
        assert db.read_bytes() == digest and not (small_journal / "runs").exists()
    finally:
        small_journal.chmod(0o755)
        db.chmod(0o644)


def test_unwritable_home_parent_is_one_line(tmp_path: Path) -> None:
    parent = tmp_path / "locked"
    parent.mkdir(mode=0o555)
    parent.chmod(0o555)
    try:
        env = _env(parent / "home")
        _one_error_line(_cli(env, "journal", "note", "x", cwd=tmp_path, prefix=_no_dac()), "Permission denied")
        assert _cli(env, "journal", cwd=tmp_path, prefix=_no_dac()).returncode == 0  # nothing there yet: empty
        assert list(parent.iterdir()) == []
    finally:
        parent.chmod(0o755)


def test_locked_journal_note_says_busy_and_train_leaves_nothing(small_journal: Path, tmp_path: Path) -> None:
    env = _env(small_journal, FASTPOSE_BUSY_TIMEOUT_S="0.3")
    with JournalStore.open(f"sqlite:///{small_journal / 'fastpose.db'}") as store:
        before = store.counts()
    with _Lock(small_journal / "fastpose.db"):
        _one_error_line(_cli(env, "journal", "note", "KEEP", "busy?", cwd=tmp_path), "journal busy", "try again")
        _one_error_line(_cli(env, "train", "--name", "LOCKED", *TINY, cwd=tmp_path), "journal busy")
    with JournalStore.open(f"sqlite:///{small_journal / 'fastpose.db'}") as store:
        assert store.counts() == before
    assert not (small_journal / "runs").exists()  # never a run directory without a journal row


FULL_DISK = textwrap.dedent(
    """
    set -u
    mount -t tmpfs -o size=400k tmpfs "$HOME_DIR"
    "$PY" -m fastpose journal note "before the disk filled" >/dev/null || exit 90
    dd if=/dev/zero of="$HOME_DIR/filler" bs=4k 2>/dev/null
    "$PY" -m fastpose journal >"$OUT/list.out" 2>"$OUT/list.err"; echo "list $?"
    "$PY" -m fastpose journal note "after" >/dev/null 2>"$OUT/note.err"; echo "note $?"
    "$PY" -m fastpose journal export --force "$HOME_DIR/lab.md" >/dev/null 2>"$OUT/export.err"; echo "export $?"
    """
)


@pytest.mark.skipif(not ROOT or not shutil.which("unshare"), reason="needs root and unshare for a private tmpfs")
def test_full_disk_listing_works_and_writes_are_one_line(tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    out.mkdir()
    env = _env(home, HOME_DIR=str(home), PY=sys.executable, OUT=str(out))
    proc = subprocess.run(["unshare", "-m", "sh", "-c", FULL_DISK], env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode == 90 or "mount:" in proc.stderr:
        pytest.skip(f"cannot mount a private tmpfs here: {proc.stderr.strip()[:200]}")
    codes = dict(line.split() for line in proc.stdout.splitlines())
    assert codes["list"] == "0" and "before the disk filled" in (out / "list.out").read_text()
    for name in ("note", "export"):
        assert codes[name] == "2", (name, proc.stdout)
        err = (out / f"{name}.err").read_text()
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "full" in err or "No space left" in err, err


# ------------------------------------------------------------------------------------- strict JSON


def _strict(text: str) -> object:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_no_nan_or_infinity_token_anywhere(journal_store: JournalStore, journal_db_url: str, fp_home: Path,
                                           tmp_path: Path) -> None:
    """Config, --json, spool lines and the JSON columns: non-finite values are written as null, on SQLite and
    PostgreSQL alike."""
    run = journal_store.start_run(name="NANS", label=LABEL.format(20, "NANS"),
                                  config={"train": {"lr": float("nan"), "eps": float("inf")}, "ok": 1.5})
    journal_store.log_metrics(run.id, [MetricPoint("val/loss", float("nan"), 0, 1),
                                       MetricPoint("val/rot_err_median", float("inf"), 0, 1),
                                       MetricPoint("train/loss", 0.5, 0, 1)])
    stored = journal_store.get_run(run.id).config
    assert stored == {"train": {"lr": None, "eps": None}, "ok": 1.5}  # the JSON column holds null
    env = _env(fp_home, FASTPOSE_JOURNAL_URL=journal_db_url)
    listed = _strict(_cli(env, "journal", "--json").stdout)
    assert listed[0]["final_metrics"] == {"val/loss": None, "val/rot_err_median": None, "train/loss": 0.5}
    other = journal_store.start_run(name="NANS2", label=LABEL.format(21, "NANS2"))
    journal_store.log_metrics(other.id, [MetricPoint("val/loss", 1.0, 0, 1)])
    _strict(_cli(env, "compare", "NANS", "NANS2", "--json").stdout)

    from fastpose.journal.spool import SpoolingJournal

    spool = tmp_path / "run" / SPOOL_NAME
    journal = SpoolingJournal(lambda: (_ for _ in ()).throw(ConnectionError("down")), spool,
                              journal_id=journal_store.journal_id())
    journal.log_metrics(run.id, [MetricPoint("val/loss", float("nan"), 1, 2), MetricPoint("x", float("-inf"), 1, 2)])
    for line in spool.read_text().splitlines():
        record = _strict(line)
        assert [p[1] for p in record["args"]["points"]] == [None, None]


def test_a_working_directory_that_is_not_utf8_is_one_line(fp_home: Path, tmp_path: Path) -> None:
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    odd.mkdir()
    for argv in (["train", "--name", "X", *TINY], ["resume", "X"]):
        line = _one_error_line(_cli(_env(fp_home), *argv, cwd=odd), "working directory", "not valid UTF-8")
        assert "\\xe9" in line
    assert not fp_home.exists() and list(odd.iterdir()) == []
