"""Benchmark: the everyday screens on a 10,000-run journal: `fastpose journal` and `fastpose compare`
of two runs under 0.5 s, `compare --plot` under 2 s.

    .venv/bin/python tests/bench/bench_screens.py [--runs 10000] [--metrics 1000000] [--repeat 7] [--rebuild]
                                                  [--baseline TREE]

The journal is the one tests/bench/bench_journal.py builds (through the real schema, then direct bulk
inserts: RUNS runs over ~400 days, 10 metrics per run with an equal share of METRICS history rows, their
summaries, git states, notes), kept in tests/bench/out/. Every command runs as a fresh process (what a user
waits for: interpreter start, imports, the journal read, the rendering); the cases are interleaved, one round
after another, so a busy machine slows them alike. Printed: the median wall time per case over REPEAT rounds,
its CPU time, and the import time alone (``python -c "import fastpose.cli"``) beside them.

``--baseline TREE``: every case also runs from another checkout of fastpose (``PYTHONPATH=TREE``, e.g. a
``git worktree`` of the commit before a change), interleaved with this tree's in the same rounds, and the
ratio of the medians (this tree / baseline) is printed per case.

``--instructions``: each case also runs once per tree under ``valgrind --tool=callgrind`` and the instructions
it executed are compared: a count that the machine's load does not change (``PYTHONHASHSEED=0``), for a
shared machine where wall and CPU time vary by more than the difference being measured.
"""

from __future__ import annotations

import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_journal import ensure_journal, journal_args  # noqa: E402 - the same journal as the listing benchmark


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return wall, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime


def instructions(cmd: list[str], env: dict[str, str]) -> int:
    """Instructions ``cmd`` executes, child processes included, counted by callgrind."""
    import re

    out = Path(tempfile.mkdtemp()) / "callgrind.out"
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out}.%p",
                           *cmd], env={**env, "PYTHONHASHSEED": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"callgrind of {' '.join(cmd)} failed: {proc.stderr[-500:]}")
    return sum(int(m.group(1)) for m in re.finditer(r"Collected : (\d+)", proc.stderr))


def main() -> None:
    args = journal_args(__doc__)
    db = ensure_journal(args)
    with sqlite3.connect(db) as c:
        n_runs, n_metrics = (c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "metrics"))
        newest = c.execute("SELECT name FROM runs ORDER BY started_at DESC LIMIT 2").fetchall()
        (first_id,) = c.execute("SELECT MIN(id) FROM runs").fetchone()
    c.close()
    a, b = newest[0][0], str(first_id)  # the newest run by NAME, and the oldest by id

    env = {**os.environ, "FASTPOSE_HOME": str(args.home), "COLUMNS": "160"}
    env.pop("FASTPOSE_JOURNAL_URL", None)
    exe = Path(sys.executable).with_name("fastpose")
    fp = [str(exe)] if exe.exists() else [sys.executable, "-m", "fastpose"]
    plot = Path(tempfile.mkdtemp()) / "curves.png"
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"], None),
        ("import fastpose.cli (alone)", [sys.executable, "-c", "import fastpose.cli"], None),
        ("fastpose journal", [*fp, "journal"], 0.5),
        (f"fastpose compare {a} {b}", [*fp, "compare", a, b], 0.5),
        (f"fastpose compare {a} {b} --json", [*fp, "compare", a, b, "--json"], 0.5),
        ("fastpose journal show <newest NAME>", [*fp, "journal", "show", a], None),
        (f"fastpose compare {a} {b} --plot", [*fp, "compare", a, b, "--plot", str(plot)], 2.0),
    ]
    trees = {"": env}
    if args.baseline is not None:  # the same commands from another checkout, in the same rounds
        trees["baseline"] = {**env, "PYTHONPATH": str(args.baseline.resolve())}
        fp[:] = [sys.executable, "-m", "fastpose"]  # the console script would import this tree's copy
    for tree_env in trees.values():  # warm the page cache and check each command works
        for _, cmd, _ in cases:
            run_once(cmd, tree_env)
    walls: dict[tuple[str, str], list[float]] = {(t, label): [] for t in trees for label, _, _ in cases}
    cpus: dict[tuple[str, str], list[float]] = {(t, label): [] for t in trees for label, _, _ in cases}
    for _ in range(args.repeat):  # interleaved: round after round
        for label, cmd, _ in cases:
            for tree, tree_env in trees.items():
                wall, cpu = run_once(cmd, tree_env)
                walls[tree, label].append(wall)
                cpus[tree, label].append(cpu)

    print(f"journal: {n_runs:,} runs, {n_metrics:,} metric rows, {db.stat().st_size / 1e6:.0f} MB ({db})")
    print(f"median of {args.repeat} interleaved rounds, each command a fresh process; {os.cpu_count()} CPUs, load "
          f"average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (a shared machine: wall time suffers, CPU less)")
    print(f"  {'command':48s} {'wall':>8s} {'min':>8s} {'cpu':>8s}  target")
    for label, _, target in cases:
        wall, cpu = statistics.median(walls["", label]), statistics.median(cpus["", label])
        verdict = "" if target is None else (f"{target} s  OK" if wall < target else f"{target} s  OVER")
        print(f"  {label:48s} {wall * 1000:6.0f}ms {min(walls['', label]) * 1000:6.0f}ms {cpu * 1000:6.0f}ms  {verdict}")
    if args.instructions:
        print("instructions executed (valgrind --tool=callgrind, PYTHONHASHSEED=0, one run each):")
        print(f"  {'command':48s} " + " ".join(f"{t or 'this tree':>16s}" for t in trees)
              + ("   ratio" if len(trees) > 1 else ""))
        for label, cmd, _ in cases:
            counts = [instructions(cmd, tree_env) for tree_env in trees.values()]
            ratio = f"  {counts[0] / counts[1]:6.3f}" if len(counts) > 1 else ""
            print(f"  {label:48s} " + " ".join(f"{c:16,d}" for c in counts) + ratio)
    if "baseline" in trees:
        print(f"against the baseline {args.baseline} (this tree / baseline, medians):")
        print(f"  {'command':48s} {'wall':>8s} {'base':>8s} {'ratio':>6s} {'cpu':>8s} {'base':>8s} {'ratio':>6s}")
        for label, _, _ in cases:
            w, wb = statistics.median(walls["", label]), statistics.median(walls["baseline", label])
            c, cb = statistics.median(cpus["", label]), statistics.median(cpus["baseline", label])
            print(f"  {label:48s} {w * 1000:6.0f}ms {wb * 1000:6.0f}ms {w / wb:6.3f} {c * 1000:6.0f}ms "
                  f"{cb * 1000:6.0f}ms {c / cb:6.3f}")


if __name__ == "__main__":
    main()
