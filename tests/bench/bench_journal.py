"""Benchmark: `fastpose journal` and `fastpose --help` wall time on a large journal.

    .venv/bin/python tests/bench/bench_journal.py [--runs 10000] [--metrics 1000000] [--repeat 7] [--rebuild]

Builds (once; kept in tests/bench/out/, git-ignored) a SQLite journal of RUNS runs over ~400 days with
METRICS metric rows (10 metrics per run, an equal share of epochs each), their summaries, git states and
notes, through the real schema (``JournalStore.open`` migrates it) and bulk inserts. Then times, as fresh
processes, ``python -c pass``, ``fastpose --help``, ``fastpose journal`` (default limit) and a few more,
reporting the median wall time and its ratio to ``python -c pass``. Targets: journal < 0.5 s, --help < 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

METRICS = [
    ("train/loss", "min"), ("train/loss_mask", "min"), ("train/loss_rot", "min"), ("val/loss", "min"),
    ("val/rot_err_mean", "min"), ("val/rot_err_median", "min"), ("val/degree_mAP_5", "max"),
    ("val/degree_mAP_10", "max"), ("val/degree_mAP_20", "max"), ("val/miss_rate", "min"),
]
NAMES = ["MSE_BASELINE", "QLOSS_BASELINE", "PW_QLOSS_FIX", "AGG_QLOSS_FIX", "GEODESIC", "NEGLOG_EPS"]


def build(home: Path, n_runs: int, n_metrics: int) -> None:
    from fastpose.journal.store import JournalStore

    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    db = home / "fastpose.db"
    JournalStore.open(f"sqlite:///{db}").close()  # the real schema, via the migrations
    rng = random.Random(0)
    epochs = max(1, n_metrics // (n_runs * len(METRICS)))
    t0 = datetime(2025, 10, 1, 8, tzinfo=timezone.utc)
    fmt = lambda d: d.replace(tzinfo=None).isoformat(" ", "microseconds")  # noqa: E731 - SQLAlchemy's SQLite text
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous = OFF")
    runs, gits, metrics, summaries, notes = [], [], [], [], []
    for i in range(1, n_runs + 1):
        name = rng.choice(NAMES)
        start = t0 + timedelta(minutes=i * 58 + rng.randint(0, 30))
        end = start + timedelta(minutes=rng.randint(5, 120))
        status = rng.choices(["completed", "crashed", "interrupted", "diverged"], [85, 8, 5, 2])[0]
        label = f"{start:%y-%m-%d}/{start:%H-%M}-{name}-SYNTH-resnet18-scratch"
        config = {"name": name, "train": {"lr": 2e-3, "epochs": epochs}, "loss": {"name": "qloss"}}
        tb = "Traceback (most recent call last):\n  File \"runner.py\", line 1\nRuntimeError: boom" if status == "crashed" else None
        runs.append((i, name, label, status, fmt(start), fmt(start), fmt(end), fmt(end), 4000 + i, "bench-host",
                     "bench", "fastpose train", "/work", json.dumps(config), status == "crashed" and "RuntimeError" or None,
                     status == "crashed" and "boom" or None, tb, epochs - 1, epochs * 100))
        gits.append((i, 1, f"{i:040x}", "main", i % 3 == 0, None, "[]", "commit message"))
        for m, (metric, direction) in enumerate(METRICS):
            vals = [rng.random() * 10 / (e + 1) for e in range(epochs)]
            for e, v in enumerate(vals):
                metrics.append((i, metric, e, e * 100, v, fmt(start + timedelta(minutes=e))))
            best_e = (min if direction == "min" else max)(range(epochs), key=vals.__getitem__)
            summaries.append((i, metric, direction, vals[-1], epochs - 1, (epochs - 1) * 100, vals[best_e], best_e,
                              best_e * 100, epochs, fmt(end)))
        if i % 5 == 0:
            notes.append((i, f"note on run {i}", fmt(end)))
        if i % 25 == 0:
            notes.append((None, f"day note {i}", fmt(end)))
    with conn:
        conn.executemany(
            "INSERT INTO runs (id, name, label, status, created_at, started_at, ended_at, heartbeat_at, pid, host,"
            " username, command, cwd, config, error_type, error_message, traceback, epoch, step)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", runs)
        conn.executemany("INSERT INTO git_states (run_id, is_repo, commit_sha, branch, dirty, diff, untracked, message)"
                         " VALUES (?,?,?,?,?,?,?,?)", gits)
        conn.executemany("INSERT INTO metrics (run_id, name, epoch, step, value, logged_at) VALUES (?,?,?,?,?,?)", metrics)
        conn.executemany("INSERT INTO metric_summaries (run_id, name, direction, final, final_epoch, final_step, best,"
                         " best_epoch, best_step, count, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", summaries)
        conn.executemany("INSERT INTO notes (run_id, text, created_at) VALUES (?,?,?)", notes)
    conn.execute("ANALYZE")
    conn.close()


def timed(cmd: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user + sys) of ``cmd`` run as a fresh process."""
    import resource

    subprocess.run(cmd, env=env, capture_output=True, check=True)  # warm the page cache
    walls, cpus = [], []
    for _ in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def journal_args(doc: str | None) -> argparse.Namespace:
    """The options of the benchmarks that read the big journal (this one and bench_screens.py)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--metrics", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--home", type=Path, default=ROOT / "tests" / "bench" / "out" / "journal-bench")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout of fastpose to time side by side (bench_screens.py)")
    ap.add_argument("--no-mlflow", action="store_true",
                    help="leave out the listing beside MLflow's (bench_screens.py)")
    ap.add_argument("--instructions", action="store_true",
                    help="also count the instructions each command executes, under callgrind (bench_screens.py)")
    return ap.parse_args()


def ensure_journal(args: argparse.Namespace) -> Path:
    """The journal under ``args.home``: reused when it has the asked-for size at today's schema revision,
    else built anew (``--rebuild`` always builds). Returns its database file."""
    from fastpose.journal.db import HEAD_REVISION

    db = args.home / "fastpose.db"
    counts = None
    if db.exists() and not args.rebuild:
        with sqlite3.connect(db) as c:
            try:
                counts = (c.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
                          c.execute("SELECT COUNT(*) FROM metrics").fetchone()[0],
                          c.execute("SELECT version_num FROM alembic_version").fetchone()[0])
            except sqlite3.Error:
                counts = None
        c.close()
    if counts is None or counts[0] != args.runs or abs(counts[1] - args.metrics) > args.metrics * 0.01 \
            or counts[2] != HEAD_REVISION:
        t = time.perf_counter()
        build(args.home, args.runs, args.metrics)
        print(f"built journal in {time.perf_counter() - t:.1f} s")
    return db


def main() -> None:
    args = journal_args(__doc__)
    db = ensure_journal(args)
    with sqlite3.connect(db) as c:
        n_runs, n_metrics = (c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "metrics"))
    c.close()
    size_mb = db.stat().st_size / 1e6

    env = {**os.environ, "FASTPOSE_HOME": str(args.home)}
    env.pop("FASTPOSE_JOURNAL_URL", None)
    exe = Path(sys.executable).with_name("fastpose")
    fp = [str(exe)] if exe.exists() else [sys.executable, "-m", "fastpose"]
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"], None),
        ("fastpose --help", [*fp, "--help"], 0.3),
        ("fastpose journal", [*fp, "journal"], 0.5),
        ("fastpose journal --json", [*fp, "journal", "--json"], None),
        ("fastpose journal --name PW_QLOSS_FIX --limit 20", [*fp, "journal", "--name", "PW_QLOSS_FIX", "--limit", "20"], None),
        ("fastpose journal show <newest NAME>", [*fp, "journal", "show", "PW_QLOSS_FIX"], None),
    ]
    print(f"journal: {n_runs:,} runs, {n_metrics:,} metric rows, {size_mb:.0f} MB ({db})")
    print(f"median of {args.repeat} fresh processes each; {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (wall time suffers on a busy machine; CPU time less)")
    print(f"  {'command':48s} {'wall':>8s} {'ratio':>6s} {'cpu':>8s} {'ratio':>6s}")
    base = None
    for label, cmd, target in cases:
        wall, cpu = timed(cmd, env, args.repeat)
        base = base or (wall, cpu)
        verdict = "" if target is None else ("  OK" if wall < target else f"  OVER target {target} s")
        print(f"  {label:48s} {wall * 1000:6.0f}ms {wall / base[0]:5.1f}x {cpu * 1000:6.0f}ms {cpu / max(base[1], 1e-3):5.1f}x{verdict}")


if __name__ == "__main__":
    main()
