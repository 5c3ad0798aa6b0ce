"""Copy the newest RUNS runs of a fastpose journal into an MLflow tracking store, for the side-by-side listing
in tests/bench/bench_screens.py. Runs under MLflow's own interpreter (a venv of its own under tests/bench/out/,
never the project's):

    tests/bench/out/mlflow-list/venv/bin/python tests/bench/mlflow_store.py JOURNAL.db STORE_DIR --runs 1000

Each run becomes an MLflow run of one experiment ("fastpose-bench") with the same name, start and end time,
status (completed -> FINISHED, crashed/diverged -> FAILED, others -> KILLED), its config flattened as
params, and its whole metric history (every journaled point, with its epoch as the step). The store is
SQLite (``STORE_DIR/mlflow.db``), MLflow's own SQL backend; prints the experiment id.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

STATUS = {"completed": "FINISHED", "crashed": "FAILED", "diverged": "FAILED", "running": "RUNNING"}


def _ms(text: str | None) -> int | None:
    if not text:
        return None
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


def _flat(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("journal", type=Path)
    ap.add_argument("store", type=Path)
    ap.add_argument("--runs", type=int, default=1000)
    args = ap.parse_args()

    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    args.store.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{args.store.resolve() / 'mlflow.db'}")
    experiment = client.create_experiment("fastpose-bench", artifact_location=str(args.store.resolve() / "artifacts"))
    conn = sqlite3.connect(args.journal)
    runs = conn.execute("SELECT id, name, label, status, started_at, ended_at, config FROM runs "
                        "ORDER BY started_at DESC LIMIT ?", (args.runs,)).fetchall()
    for run_id, name, label, status, started, ended, config in runs:
        run = client.create_run(experiment, start_time=_ms(started), run_name=name,
                                tags={"fastpose.label": label, "fastpose.id": str(run_id)})
        rid = run.info.run_id
        params = [Param(k, v) for k, v in _flat(json.loads(config or "{}")).items()]
        points = conn.execute("SELECT name, epoch, value, logged_at FROM metrics WHERE run_id = ? ORDER BY id",
                              (run_id,)).fetchall()
        metrics = [Metric(n, float("nan") if v is None else v, _ms(at) or 0, e or 0) for n, e, v, at in points]
        for i in range(0, max(len(metrics), 1), 1000):  # MLflow takes at most 1000 metrics a batch
            client.log_batch(rid, metrics=metrics[i:i + 1000], params=params if i == 0 else [],
                             tags=[RunTag("fastpose.status", status)] if i == 0 else [])
        client.set_terminated(rid, STATUS.get(status, "KILLED"), end_time=_ms(ended))
    print(experiment)


if __name__ == "__main__":
    main()
