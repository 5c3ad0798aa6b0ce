"""Benchmark: the web view (``fastpose ui``) on the 10,000-run / 1,000,000-row journal, and MLflow's tracking
server on the same shape of data, side by side in one run.

    .venv/bin/python tests/bench/bench_ui.py [--repeat 31] [--runs 10000] [--metrics 1000000]

fastpose: the journal ``bench_journal.py`` builds (reused from ``tests/bench/out/journal-bench`` when it is
there), served by ``fastpose ui`` in its own process. Timed, as a client on the same machine would see them
(median wall time of a GET, the server's own time from its ``Server-Timing`` header, and the server's CPU
time per request, from ``/proc``: the figure the shared machine's load does not inflate): the runs page
(first 50, HTML), ``/api/runs`` (the same 50 as JSON), a run page, compare of 2 and of 10 runs, and one
metric's history of one run (``/api/runs/ID/history?metric=val/loss``); the bytes of each; the server's RSS
after the run. Targets: runs page <= 50 ms server time and <= 200 KB; run page <= 100 ms.

MLflow (the anchor): ``pip install mlflow`` into its own venv (``tests/bench/out/mlflow-venv``, never the
project's), a SQLite store filled through MLflow's own client with the same runs (10 metrics x 10 epochs =
100 metric steps each), built once and kept in ``tests/bench/out/mlflow-store`` (10-25 minutes on the shared
2-core machine); ``mlflow server`` on it with one worker. Timed the same way: its UI's request for the newest
50 runs (``POST /ajax-api/2.0/mlflow/runs/search``, max_results 50) and one run's metric history
(``GET /ajax-api/2.0/mlflow/metrics/get-history``). The requests of the two servers alternate, so load on the
shared machine falls on both alike. fastpose must be at least 10x faster on each.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "bench" / "out"
MLFLOW_VENV = OUT / "mlflow-venv"
MLFLOW_STORE = OUT / "mlflow-store"
METRICS = ["train/loss", "train/loss_mask", "train/loss_rot", "val/loss", "val/rot_err_mean", "val/rot_err_median",
           "val/degree_mAP_5", "val/degree_mAP_10", "val/degree_mAP_20", "val/miss_rate"]  # bench_journal.METRICS
NAMES = ["MSE_BASELINE", "QLOSS_BASELINE", "PW_QLOSS_FIX", "AGG_QLOSS_FIX", "GEODESIC", "NEGLOG_EPS"]


# ----------------------------------------------------------------------------- MLflow's store (its own venv)
def fill_mlflow(store: Path, n_runs: int, epochs: int) -> None:
    """Runs in the MLflow venv: ``n_runs`` runs with ``len(METRICS)`` metrics x ``epochs`` steps, a few params
    and tags each, through ``MlflowClient`` on a SQLite store. Resumes where a previous fill stopped."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    store.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench")
    exp_id = exp.experiment_id if exp else client.create_experiment("bench", artifact_location=str(store / "artifacts"))
    have = len(client.search_runs([exp_id], max_results=50000)) if exp else 0
    rng = random.Random(0)
    t0 = int(time.time() * 1000) - n_runs * 60_000
    start = time.perf_counter()
    for i in range(have + 1, n_runs + 1):
        name = NAMES[i % len(NAMES)]
        run = client.create_run(exp_id, start_time=t0 + i * 60_000, run_name=f"{name}-{i}",
                                tags={"fastpose.status": "completed"})
        metrics = [Metric(m, rng.random() * 10 / (e + 1), t0 + i * 60_000 + e * 1000, e)
                   for m in METRICS for e in range(epochs)]
        client.log_batch(run.info.run_id, metrics=metrics,
                         params=[Param("lr", "0.002"), Param("loss.name", "qloss"), Param("train.epochs", str(epochs))],
                         tags=[RunTag("name", name)])
        client.set_terminated(run.info.run_id, "FINISHED", end_time=t0 + i * 60_000 + 30 * 60_000)
        if i % 500 == 0:
            print(f"{i} runs, {time.perf_counter() - start:.0f} s", flush=True)
    (store / "complete.json").write_text(json.dumps({"runs": n_runs, "metric_steps": len(METRICS) * epochs,
                                                     "experiment_id": exp_id}))


def ensure_mlflow(n_runs: int, epochs: int) -> dict:
    """The MLflow venv and store, made once (``complete.json`` says the store is whole)."""
    python = MLFLOW_VENV / "bin" / "python"
    if not python.exists():
        print("installing mlflow into", MLFLOW_VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mlflow"], check=True)
    marker = MLFLOW_STORE / "complete.json"
    if marker.exists() and json.loads(marker.read_text()).get("runs") == n_runs:
        return json.loads(marker.read_text())
    print(f"filling MLflow's store with {n_runs} runs through its client (10-25 minutes)", flush=True)
    t = time.perf_counter()
    subprocess.run([str(python), __file__, "--fill-mlflow", str(MLFLOW_STORE), "--runs", str(n_runs),
                    "--epochs", str(epochs)], check=True)
    print(f"filled in {time.perf_counter() - t:.0f} s", flush=True)
    return json.loads(marker.read_text())


# ----------------------------------------------------------------------------- servers and timing
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    raise SystemExit(f"server at {url} did not answer in {timeout} s")


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (``/proc``; clock ticks)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def fetch(url: str, body: dict | None = None, pids: list[int] = ()) -> tuple[float, float | None, int, float]:
    """(wall ms, server ms from Server-Timing or None, bytes of the body, server CPU s spent meanwhile)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    cpu = cpu_s(list(pids))
    t = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        payload = response.read()
        timing = response.headers.get("Server-Timing")
    wall = (time.perf_counter() - t) * 1000
    server = float(timing.split("dur=")[1]) if timing and "dur=" in timing else None
    return wall, server, len(payload), cpu_s(list(pids)) - cpu


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (uvicorn or gunicorn workers), in MB."""
    total = 0
    pids = [pid]
    try:
        import psutil

        pids += [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:  # noqa: BLE001
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _family(pid: int) -> list[int]:
    """``pid`` and its children (uvicorn or gunicorn workers)."""
    try:
        import psutil

        return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:  # noqa: BLE001
        return [pid]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--metrics", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=31)
    ap.add_argument("--home", type=Path, default=OUT / "journal-bench")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--no-mlflow", action="store_true", help="time fastpose only")
    ap.add_argument("--fill-mlflow", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, default=10, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fill_mlflow:
        fill_mlflow(args.fill_mlflow, args.runs, args.epochs)
        return
    sys.path.insert(0, str(ROOT / "tests" / "bench"))
    sys.path.insert(0, str(ROOT))
    from bench_journal import ensure_journal

    db = ensure_journal(argparse.Namespace(runs=args.runs, metrics=args.metrics, rebuild=args.rebuild, home=args.home))
    epochs = max(1, args.metrics // (args.runs * len(METRICS)))
    mlflow = None if args.no_mlflow else ensure_mlflow(args.runs, epochs)

    env = dict(os.environ, FASTPOSE_HOME=str(args.home))
    env.pop("FASTPOSE_JOURNAL_URL", None)
    port = free_port()
    fp = subprocess.Popen([sys.executable, "-m", "fastpose", "ui", "--port", str(port)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    servers = [fp]
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(base + "/api/sweeps", fp)
        import sqlite3

        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY started_at DESC LIMIT 10")]
        conn.close()
        newest = ids[0]
        cases = {
            "runs page (first 50, HTML)": (base + "/", None),
            "runs as JSON (/api/runs, 50)": (base + "/api/runs", None),
            "run page": (base + f"/runs/{newest}", None),
            "compare, 2 runs": (base + "/compare?" + "&".join(f"run={i}" for i in ids[:2]), None),
            "compare, 10 runs": (base + "/compare?" + "&".join(f"run={i}" for i in ids[:10]), None),
            "one metric's history (JSON)": (base + f"/api/runs/{newest}/history?metric=val/loss", None),
        }
        if mlflow is not None:
            mport = free_port()
            mlflow_bin = MLFLOW_VENV / "bin" / "mlflow"
            ml = subprocess.Popen([str(mlflow_bin), "server", "--backend-store-uri",
                                   f"sqlite:///{MLFLOW_STORE / 'mlflow.db'}", "--default-artifact-root",
                                   str(MLFLOW_STORE / "artifacts"), "--host", "127.0.0.1", "--port", str(mport),
                                   "--workers", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            servers.append(ml)
            mbase = f"http://127.0.0.1:{mport}"
            wait_up(mbase + "/health", ml)
            search = {"experiment_ids": [mlflow["experiment_id"]], "max_results": 50,
                      "order_by": ["attributes.start_time DESC"], "run_view_type": "ACTIVE_ONLY"}
            newest_ml = json.loads(urllib.request.urlopen(urllib.request.Request(
                mbase + "/ajax-api/2.0/mlflow/runs/search", data=json.dumps(search).encode(),
                headers={"Content-Type": "application/json"})).read())["runs"][0]["info"]["run_id"]
            cases["MLflow runs/search (newest 50)"] = (mbase + "/ajax-api/2.0/mlflow/runs/search", search)
            cases["MLflow metric history (one metric)"] = (
                mbase + f"/ajax-api/2.0/mlflow/metrics/get-history?run_id={newest_ml}&metric_key=val/loss", None)
        results: dict[str, list[tuple[float, float | None, int, float]]] = {k: [] for k in cases}
        pids = {name: _family(servers[1 if name.startswith("MLflow") else 0].pid) for name in cases}
        for url, body in cases.values():  # warm: imports, caches
            for _ in range(3):
                fetch(url, body)
        for _ in range(args.repeat):  # interleaved: each round times every case once
            for name, (url, body) in cases.items():
                results[name].append(fetch(url, body, pids[name]))
        rss = {"fastpose ui": rss_mb(fp.pid)}
        if mlflow is not None:
            rss["mlflow server"] = rss_mb(servers[1].pid)
    finally:
        for proc in servers:
            try:
                os.killpg(proc.pid, 15) if proc is not fp else proc.terminate()
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()
    print(f"\nmachine: {os.cpu_count()} CPUs, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; commit {commit}; "
          f"journal {args.runs:,} runs / {args.metrics:,} metric rows; {args.repeat} rounds, interleaved")
    print(f"{'request':40s} {'wall ms':>9s} {'server ms':>10s} {'CPU ms':>8s} {'bytes':>10s}")
    med: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, rows in results.items():
        wall = statistics.median(r[0] for r in rows)
        servers_ms = [r[1] for r in rows if r[1] is not None]
        server = statistics.median(servers_ms) if servers_ms else None
        med[name] = wall
        cpu[name] = 1000 * sum(r[3] for r in rows) / len(rows)  # mean server CPU per request (tick-sampled)
        print(f"{name:40s} {wall:9.1f} {'-' if server is None else f'{server:.1f}':>10s} {cpu[name]:8.1f} "
              f"{rows[-1][2]:10,d}")
    for name, mb in rss.items():
        print(f"RSS {name}: {mb:.0f} MB")
    runs_server = statistics.median(r[1] for r in results["runs page (first 50, HTML)"])
    run_server = statistics.median(r[1] for r in results["run page"])
    runs_bytes = results["runs page (first 50, HTML)"][-1][2]
    print(f"targets: runs page {runs_server:.1f} ms server (<= 50) {'OK' if runs_server <= 50 else 'MISSED'}, "
          f"{runs_bytes / 1000:.0f} KB (<= 200) {'OK' if runs_bytes <= 200_000 else 'MISSED'}; "
          f"run page {run_server:.1f} ms (<= 100) {'OK' if run_server <= 100 else 'MISSED'}")
    if mlflow is not None:
        # The targets pair like with like (the newest 50 runs; one run's history of one metric). The last line
        # is for scale only: fastpose's whole run page (every curve, config, checkpoints) against one of the
        # requests MLflow's run page makes (it makes one per metric plotted, besides get-run).
        for ours, theirs, target in (("runs page (first 50, HTML)", "MLflow runs/search (newest 50)", True),
                                     ("runs as JSON (/api/runs, 50)", "MLflow runs/search (newest 50)", True),
                                     ("one metric's history (JSON)", "MLflow metric history (one metric)", True),
                                     ("run page", "MLflow metric history (one metric)", False)):
            ratio = med[theirs] / med[ours]
            cpu_ratio = cpu[theirs] / cpu[ours] if cpu[ours] else float("inf")
            verdict = ("OK" if ratio >= 10 else "MISSED (< 10x)") if target else "(for scale, not a target)"
            print(f"{ours} vs {theirs}: {ratio:.1f}x faster by median wall time, {cpu_ratio:.1f}x by server CPU "
                  f"{verdict}")


if __name__ == "__main__":
    main()
