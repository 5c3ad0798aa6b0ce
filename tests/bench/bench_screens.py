"""Benchmark: the everyday screens on a 10,000-run journal: `fastpose journal` and `fastpose compare`
of two runs under 0.5 s, `compare --plot` under 2 s, `resume` of a mistyped run or of a run without a
checkpoint refused in well under a second (before torch is imported); the listing of the newest 50, 1,000 and 10,000 runs
(`journal --limit N`: linear in N), and the 1,000-run listing beside MLflow's (`mlflow runs list` of the same
1,000 runs) at least 4x faster.

    .venv/bin/python tests/bench/bench_screens.py [--runs 10000] [--metrics 1000000] [--repeat 7] [--rebuild]
                                                  [--baseline TREE] [--no-mlflow]

The journal is the one tests/bench/bench_journal.py builds (through the real schema, then direct bulk
inserts: RUNS runs over ~400 days, 10 metrics per run with an equal share of METRICS history rows, their
summaries, git states, notes), kept in tests/bench/out/. Every command runs as a fresh process (what a user
waits for: interpreter start, imports, the journal read, the rendering); the cases are interleaved, one round
after another, so a busy machine slows them alike. Printed: the median wall time per case over REPEAT rounds,
its CPU time, and the import time alone (``python -c "import fastpose.cli"``) beside them.

MLflow runs from a virtual environment of its own, ``tests/bench/out/mlflow-list/venv`` (created with
``pip install mlflow==MLFLOW_VERSION`` when missing; never the project's), on a SQLite tracking store into
which ``tests/bench/mlflow_store.py`` copies the newest 1,000 runs of the journal (names, times, statuses,
configs as params, every metric point), built once and kept in ``tests/bench/out/mlflow-list/``.
``--no-mlflow`` leaves it out.

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

MLFLOW_VERSION = "3.17.2"  # the version the listing was first measured against
MLFLOW_DIR = ROOT / "tests" / "bench" / "out" / "mlflow-list"
MLFLOW_RUNS = 1000


def ensure_mlflow(db: Path) -> tuple[Path, dict[str, str], str]:
    """``(mlflow executable, its environment, experiment id)``: MLflow in its own venv, with a store of the
    journal's newest MLFLOW_RUNS runs (rebuilt when the journal file changed)."""
    venv = MLFLOW_DIR / "venv"
    exe = venv / "bin" / "mlflow"
    if not exe.exists():
        print(f"installing mlflow=={MLFLOW_VERSION} into {venv} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"mlflow=={MLFLOW_VERSION}"], check=True)
    store = MLFLOW_DIR / f"store-{MLFLOW_RUNS}"
    stamp = f"{db.stat().st_size} {db.stat().st_mtime_ns}"
    marker = store / "built-from.txt"
    if not marker.exists() or marker.read_text().split("\n")[0] != stamp:
        import shutil

        shutil.rmtree(store, ignore_errors=True)
        print(f"copying the newest {MLFLOW_RUNS:,} runs into an MLflow store at {store} (once)", flush=True)
        out = subprocess.run([str(venv / "bin" / "python"), str(Path(__file__).with_name("mlflow_store.py")),
                              str(db), str(store), "--runs", str(MLFLOW_RUNS)], check=True, capture_output=True,
                             text=True).stdout.split()[-1]
        marker.write_text(f"{stamp}\n{out}\n")
    experiment = marker.read_text().split("\n")[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store.resolve() / 'mlflow.db'}"}
    return exe, env, experiment


NEUTRAL = tempfile.mkdtemp(prefix="bench-screens-cwd-")  # no fastpose/ here to shadow the tree under test


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=NEUTRAL)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    expected = 2 if cmd[-2:-1] == ["resume"] else 0  # the resume cases are refusals (exit 2) on purpose
    if proc.returncode != expected:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return wall, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime


def instructions(cmd: list[str], env: dict[str, str]) -> int:
    """Instructions ``cmd`` executes, child processes included, counted by callgrind."""
    import re

    out = Path(tempfile.mkdtemp()) / "callgrind.out"
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out}.%p",
                           *cmd], env={**env, "PYTHONHASHSEED": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, cwd=NEUTRAL)
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
    listing = [(f"fastpose journal --limit {n}", [*fp, "journal", "--limit", str(n)], None) for n in (50, 1000, 10000)]
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"], None),
        ("import fastpose.cli (alone)", [sys.executable, "-c", "import fastpose.cli"], None),
        ("fastpose --help", [*fp, "--help"], 0.3),
        ("fastpose journal", [*fp, "journal"], 0.5),
        (f"fastpose compare {a} {b}", [*fp, "compare", a, b], 0.5),
        (f"fastpose compare {a} {b} --json", [*fp, "compare", a, b, "--json"], 0.5),
        ("fastpose journal show <newest NAME>", [*fp, "journal", "show", a], None),
        (f"fastpose compare {a} {b} --plot", [*fp, "compare", a, b, "--plot", str(plot)], 2.0),
        ("fastpose resume NOSUCHRUN (refused)", [*fp, "resume", "NOSUCHRUN"], 1.0),
        (f"fastpose resume {b} (no checkpoint: refused)", [*fp, "resume", b], 1.0),
        *listing,
    ]
    trees = {"": env}
    mlflow_label = f"mlflow runs list ({MLFLOW_RUNS:,} runs)"
    if not args.no_mlflow:
        mlflow, mlflow_env, experiment = ensure_mlflow(db)
        mlflow_cmd = [str(mlflow), "runs", "list", "--experiment-id", experiment]
        run_once(mlflow_cmd, mlflow_env)
    if args.baseline is not None:  # the same commands from another checkout, in the same rounds
        # Each tree by PYTHONPATH, both alike (an entry before the standard library costs every import a
        # lookup), and from a neutral working directory (`python -m` and `-c` put it before PYTHONPATH).
        trees[""] = {**env, "PYTHONPATH": str(ROOT)}
        trees["baseline"] = {**env, "PYTHONPATH": str(args.baseline.resolve())}
        for tree, tree_env in trees.items():  # the command each case runs, and the copy it imports
            found = subprocess.run([*fp, "--version"], env=tree_env, capture_output=True, text=True, cwd=NEUTRAL)
            print(f"tree {tree or 'this'}: {found.stdout.strip()}")
    for tree_env in trees.values():  # warm the page cache and check each command works
        for _, cmd, _ in cases:
            run_once(cmd, tree_env)
    walls: dict[tuple[str, str], list[float]] = {(t, label): [] for t in trees for label, _, _ in cases}
    cpus: dict[tuple[str, str], list[float]] = {(t, label): [] for t in trees for label, _, _ in cases}
    if not args.no_mlflow:
        walls["", mlflow_label], cpus["", mlflow_label] = [], []
    for _ in range(args.repeat):  # interleaved: round after round
        for label, cmd, _ in cases:
            for tree, tree_env in trees.items():
                wall, cpu = run_once(cmd, tree_env)
                walls[tree, label].append(wall)
                cpus[tree, label].append(cpu)
        if not args.no_mlflow:
            wall, cpu = run_once(mlflow_cmd, mlflow_env)
            walls["", mlflow_label].append(wall)
            cpus["", mlflow_label].append(cpu)

    print(f"journal: {n_runs:,} runs, {n_metrics:,} metric rows, {db.stat().st_size / 1e6:.0f} MB ({db})")
    print(f"median of {args.repeat} interleaved rounds, each command a fresh process; {os.cpu_count()} CPUs, load "
          f"average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (a shared machine: wall time suffers, CPU less)")
    print(f"  {'command':48s} {'wall':>8s} {'min':>8s} {'cpu':>8s}  target")
    for label, _, target in cases:
        wall, cpu = statistics.median(walls["", label]), statistics.median(cpus["", label])
        verdict = "" if target is None else (f"{target} s  OK" if wall < target else f"{target} s  OVER")
        print(f"  {label:48s} {wall * 1000:6.0f}ms {min(walls['', label]) * 1000:6.0f}ms {cpu * 1000:6.0f}ms  {verdict}")
    if not args.no_mlflow:
        ours, theirs = statistics.median(walls["", listing[1][0]]), statistics.median(walls["", mlflow_label])
        ours_cpu, theirs_cpu = statistics.median(cpus["", listing[1][0]]), statistics.median(cpus["", mlflow_label])
        print(f"  {mlflow_label:48s} {theirs * 1000:6.0f}ms {min(walls['', mlflow_label]) * 1000:6.0f}ms "
              f"{theirs_cpu * 1000:6.0f}ms  (mlflow {MLFLOW_VERSION}, SQLite store, its own venv)")
        verdict = "OK" if theirs / ours >= 4 else "UNDER"
        print(f"the {MLFLOW_RUNS:,}-run listing: fastpose {theirs / ours:.1f}x faster than mlflow in wall time "
              f"({theirs_cpu / ours_cpu:.1f}x in CPU time); target >= 4x  {verdict}")
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
