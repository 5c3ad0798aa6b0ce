"""Sweep overhead: `fastpose sweep` of 4 tiny cells with --jobs 2 against the same 4 `fastpose train` commands
run two at a time by hand (two terminals, two commands each), measured side by side in interleaved rounds.

    python tests/bench/bench_sweep.py --rounds 3

Variants, each into a fresh journal home:
- ``sweep``: ``fastpose sweep FILE --jobs 2`` (the CPU threads split: 1 thread per cell on 2 cores).
- ``hand-1t``: two lanes, each running two ``fastpose train --config CELL.toml --no-progress`` one after the
  other, with ``OMP_NUM_THREADS`` as the sweep sets it: the sweep machinery's own overhead. Each lane is its
  own session, as two terminals are: with the kernel's autogroup scheduling (on in most desktop and server
  kernels) every session gets a fair share of the CPUs, and the sweep starts each cell in its own session, so
  on a loaded machine lanes in one session would lose against it for that reason alone.
- ``hand``: the same with torch's default threads (what a person typing the commands gets).
Reported: wall seconds per variant per round, the median over rounds, and sweep / hand ratios (target <= 1.05).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = """
name = "BENCH"
[data]
image_size = 32
train_size = 32
val_size = 16
[train]
epochs = 2
batch_size = 8
log_images = 0
[sweep]
id = "bench"
"loss.name" = ["mse", "qloss"]
"train.seed" = [0, 1]
"""


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# `fastpose sweep` in a process that reports, at exit, the CPU seconds of the sweep process itself (planning,
# journal, table) and of its cells: the machinery's own share, which wall-clock ratios cannot isolate.
WRAPPER = """
import atexit, resource, sys
def report():
    own, cells = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"CPU own={own.ru_utime + own.ru_stime:.3f} cells={cells.ru_utime + cells.ru_stime:.3f}", file=sys.stderr)
atexit.register(report)
from fastpose.cli import run
run(sys.argv[1:])
"""
CPU: list[tuple[float, float]] = []


def run_sweep(work: Path, sweep_file: Path) -> float:
    home = work / "sweep-home"
    env = _env(home)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, "sweep", str(sweep_file), "--jobs", "2"], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    for line in proc.stderr.splitlines():
        if line.startswith("CPU own="):
            own, cells = (float(part.split("=")[1]) for part in line.split()[1:])
            CPU.append((own, cells))
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    shutil.rmtree(home)
    return wall


def run_by_hand(work: Path, cells: list[Path], threads: int | None) -> float:
    home = work / "hand-home"
    env = _env(home)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    lanes = [cells[0::2], cells[1::2]]  # two terminals, two commands each
    script = " && ".join  # each lane: one command after the other, as typed
    start = time.perf_counter()
    procs = [
        subprocess.Popen(["bash", "-c", script(f"{sys.executable} -m fastpose train --config {c} --no-progress"
                                               for c in lane)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for lane in lanes
    ]
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"a train command failed: exit codes {codes}")
    shutil.rmtree(home)
    return wall


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FASTPOSE_JOURNAL_URL", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["FASTPOSE_HOME"] = str(home)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from fastpose.studies.spec import cell_toml, load_sweep

    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    sweep_file = work / "bench.toml"
    sweep_file.write_text(SWEEP)
    cells = []
    for cell in load_sweep(sweep_file).cells():  # the very configs the sweep's cells train
        path = work / f"{cell.name}.toml"
        path.write_text(cell_toml(cell.config))
        cells.append(path)
    threads = max(1, cpu_count() // 2)
    variants = {
        "sweep": lambda: run_sweep(work, sweep_file),
        "hand-1t": lambda: run_by_hand(work, cells, threads),
        "hand": lambda: run_by_hand(work, cells, None),
    }
    walls: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            walls[name].append(variants[name]())
        print(f"round {r + 1}: " + ", ".join(f"{n} {walls[n][-1]:.1f} s" for n in names), flush=True)
    med = {n: statistics.median(w) for n, w in walls.items()}
    print(f"\n4 cells (32x32, 32 images, 2 epochs), 2 at a time, {cpu_count()} CPUs, {threads} thread(s) per sweep cell; "
          f"median wall over {args.rounds} rounds:")
    for n in names:
        print(f"  {n:8s} {med[n]:6.1f} s   (rounds: {', '.join(f'{w:.1f}' for w in walls[n])})")
    per_round = [s / h for s, h in zip(walls["sweep"], walls["hand-1t"])]
    print(f"sweep / hand-1t: {med['sweep'] / med['hand-1t']:.3f} (median walls); per round: "
          + ", ".join(f"{x:.3f}" for x in per_round))
    print(f"sweep / hand:    {med['sweep'] / med['hand']:.3f} (median walls); target <= 1.05")
    if CPU:
        own, cells = statistics.median(c[0] for c in CPU), statistics.median(c[1] for c in CPU)
        print(f"CPU of the sweep process itself: {own:.2f} s beside {cells:.1f} s in its cells "
              f"({100 * own / (own + cells):.1f} % of the sweep's CPU; medians over rounds)")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
