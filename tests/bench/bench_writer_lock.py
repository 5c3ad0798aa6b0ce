"""The SQLite writers' queue: the kernel-blocking flock queue (db.sqlite_write_turn) against filelock.

    python tests/bench/bench_writer_lock.py [--procs 16] [--writes 20] [--rounds 3]

N processes each take the lock ``--writes`` times and hold it for one real SQLite write transaction (a
25-row insert, committed), as the journal's writers do at an epoch end. Reported per variant: the longest
and the 99th-percentile wait for the lock, over all acquisitions of a round; rounds interleave the variants.
filelock polls (``LOCK_NB`` every ``poll_interval``), so a waiter can lose the lock to a newcomer between
two polls; the flock queue sleeps in the kernel and is woken when the lock is free.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path


def _writer(variant: str, db_path: str, writes: int, barrier, out) -> None:  # noqa: ANN001
    from filelock import FileLock

    from fastpose.journal.db import sqlite_write_turn

    conn = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    waits = []
    barrier.wait()
    for i in range(writes):
        t = time.perf_counter()
        if variant == "flock queue":
            ctx = sqlite_write_turn(Path(db_path), 60.0)
        else:
            ctx = FileLock(db_path + ".lock", timeout=60.0, poll_interval=float(variant.split()[-1]))
        with ctx:
            waits.append(time.perf_counter() - t)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO m VALUES (?, ?)", [(i, float(j)) for j in range(25)])
            conn.execute("COMMIT")
    out.put(waits)


def one_round(variant: str, procs: int, writes: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        db_path = str(Path(tmp) / "bench.db")
        conn = sqlite3.connect(db_path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE m (k INTEGER, v REAL)")
        conn.close()
        ctx = mp.get_context("spawn")
        barrier, out = ctx.Barrier(procs), ctx.Queue()
        workers = [ctx.Process(target=_writer, args=(variant, db_path, writes, barrier, out)) for _ in range(procs)]
        for w in workers:
            w.start()
        waits = [x for _ in workers for x in out.get()]
        for w in workers:
            w.join()
        return waits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--procs", type=int, default=16)
    parser.add_argument("--writes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    variants = ["flock queue", "filelock poll 0.05", "filelock poll 0.005"]
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants:
            waits = sorted(one_round(v, args.procs, args.writes))
            results[v].append((waits[-1], waits[int(0.99 * (len(waits) - 1))]))
            print(f"round {r}: {v:<20} max wait {waits[-1]:.3f} s, p99 {results[v][-1][1]:.3f} s, "
                  f"median {statistics.median(waits):.4f} s over {len(waits)} acquisitions", flush=True)
    for v in variants:
        print(f"{v:<20} max wait (median of rounds) {statistics.median(m for m, _ in results[v]):.3f} s, "
              f"p99 {statistics.median(p for _, p in results[v]):.3f} s")


if __name__ == "__main__":
    main()
