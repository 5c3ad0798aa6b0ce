"""A journal built by direct inserts whose every screen is deterministic: fixed times, hosts, pids, versions,
git states and checkpoint files. ``tests/test_screens_golden.py`` draws the screens from it and compares
them byte for byte with the files in this folder.

    python tests/golden/build_journal.py HOME      # builds HOME/fastpose.db and HOME/runs/...
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

DAY1 = datetime(2026, 11, 27, 9, 15, tzinfo=timezone.utc)
DAY2 = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)
LONG_NOTE = (
    "resumed from run 1 (26-11-27/09-15-AGG_QLOSS-SYNTHETIC-resnet18-scratch, interrupted) at "
    "journal/runs/26-11-27/09-15-AGG_QLOSS-SYNTHETIC-resnet18-scratch/checkpoints/last.ckpt; "
    "code: commit 1234567890 -> abcdef1234; config: train.epochs 8 -> 12, loss.name qloss -> mse"
)
DIFF = "diff --git a/fastpose/pose/losses.py b/fastpose/pose/losses.py\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-eps = 1e-2\n+eps = 1e-3\n"
PER_CLASS = ("bottle", "bowl", "camera", "can", "laptop", "mug")


def _metrics(ap: float, miss: float, rot: float | None, first: int, epochs: int, cls_scale: float = 1.0):
    from fastpose.journal.records import MetricPoint

    out = []
    for e in range(epochs):
        f = (e + 1) / epochs
        step = 40 * (first + e + 1)
        out.append([
            MetricPoint("val/10deg", round(ap * f, 4), first + e, step),
            MetricPoint("val/5deg", round(ap * f / 2, 4), first + e, step),
            MetricPoint("val/20deg", round(min(1.0, ap * f * 1.5), 4), first + e, step),
            MetricPoint("val/iou_25", round(0.6 * f, 4), first + e, step),
            MetricPoint("val/10deg_5cm", round(ap * f / 3, 4), first + e, step),
            MetricPoint("val/miss_rate", round(miss + (1 - f) * 0.1, 4), first + e, step),
            MetricPoint("val/false_positive_rate", round(0.3 + (1 - f) * 0.2, 4), first + e, step),
            MetricPoint("val/loss", round(2.0 - f, 4), first + e, step),
            MetricPoint("train/loss", round(2.5 - f, 4), first + e, step),
            MetricPoint("train/loss_rot", round(1.1 - f / 2, 4), first + e, step),
            *[MetricPoint(f"val/10deg_5cm/{c}", round(ap * f * cls_scale * (i + 1) / 10, 4), first + e, step)
              for i, c in enumerate(PER_CLASS)],
            *([MetricPoint("val/rot_err_median", round(rot + 20 * (1 - f), 3), first + e, step),
               MetricPoint("val/trans_err_median_cm", round(rot / 4 + 3 * (1 - f), 3), first + e, step)]
              if rot is not None else []),
        ])
    return out


def environment(threads: int, *, torch: str = "2.13.0+cpu", chosen: str = "--threads") -> dict:
    """A run's environment as ``fastpose.training.machine`` records it (one CPU model, no GPU)."""
    return {"threads": {"torch_intra_op": threads, "torch_inter_op": threads, "OMP_NUM_THREADS": str(threads),
                        "MKL_NUM_THREADS": str(threads), "cpus": 2, "chosen": chosen},
            "device": {"accelerator": "cpu", "name": "AMD EPYC 7B13", "count": 1}, "precision": "32-true",
            "backends": {"cudnn_benchmark": False, "cudnn_deterministic": False, "allow_tf32_matmul": False,
                         "allow_tf32_cudnn": True, "float32_matmul_precision": "highest",
                         "deterministic_algorithms": "warn"},
            "versions": {"torch": torch, "lightning": "2.6.6", "numpy": "2.4.6", "cuda": None, "cudnn": None,
                         "python": "3.11.7"},
            "recorded": "at fit start"}


def build(home: Path) -> dict[str, int]:
    from fastpose.config import RunConfig
    from fastpose.journal import sweeps
    from fastpose.journal.evaluations import record_evaluation
    from fastpose.journal.records import GitState, SourceState
    from fastpose.journal.store import JournalStore
    from fastpose.journal.tags import add_tags

    home.mkdir(parents=True, exist_ok=True)
    store = JournalStore.open(f"sqlite:///{home / 'fastpose.db'}")
    ids: dict[str, int] = {}
    times: dict[int, tuple[datetime, datetime | None]] = {}
    clean = SourceState(is_repo=True, commit="f" * 40, branch="main", version="0.1.0",
                        location="/src/fastpose/fastpose", same_as_cwd=False)

    def run(key: str, name: str, start: datetime, minutes: float, status: str, *, backbone: str = "resnet18",
            parent: str | None = None, git: GitState | None = None, ap: float = 0.3, miss: float = 0.2,
            rot: float | None = 12.0, epochs: int = 4, first: int = 0, updates: dict | None = None,
            env: dict | None = None) -> int:
        config = RunConfig(name=name).override({"model.backbone": backbone, "train.accelerator": "cpu",
                                                **(updates or {})}).to_dict()
        label = f"{start:%y-%m-%d/%H-%M}-{name}-SYNTHETIC-{backbone}-scratch"
        run_dir = home / "runs" / label
        record = store.start_run(
            name=name, label=label, config=config, run_dir=str(run_dir),
            command=f"fastpose train --name {name}", parent_id=ids.get(parent) if parent else None,
            git=git or GitState(is_repo=True, commit="1234567890" * 4, branch="main", dirty=False),
            versions={"python": "3.11.7", "torch": "2.13.0+cpu", "lightning": "2.6.6"}, source=clean,
            environment=env,
        )
        ids[key] = record.id
        for points in _metrics(ap, miss, rot, first, epochs):
            store.log_metrics(record.id, points)
        if status == "crashed":
            store.crash(record.id, "RuntimeError", "CUDA error: out of memory",
                        "Traceback (most recent call last):\n  File \"train.py\", line 1, in <module>\n"
                        "RuntimeError: CUDA error: out of memory", epoch=first + epochs - 1, step=40)
        else:
            store.finish(record.id, status=status, epoch=first + epochs - 1, step=40 * (first + epochs),
                         message="SIGINT at epoch 3, step 160" if status == "interrupted" else None)
        times[record.id] = (start, start + timedelta(minutes=minutes))
        return record.id

    # AGG_QLOSS and MSE_BASELINE were journaled before runs recorded their environment
    run("agg", "AGG_QLOSS", DAY1, 12.5, "interrupted", updates={"train.epochs": 8})
    run("cont", "AGG_QLOSS_CONT", DAY1 + timedelta(hours=2), 95, "completed", parent="agg", first=4, epochs=8,
        ap=0.4321, miss=0.1234, rot=9.5, updates={"train.epochs": 12, "loss.name": "mse"}, env=environment(2),
        git=GitState(is_repo=True, commit="abcdef1234" * 4, branch="exp/mse", dirty=True, diff=DIFF,
                     untracked=("notes.txt",), message="Try MSE on the aggregated loss"))
    run("mse", "MSE_BASELINE", DAY2, 3.2, "crashed", ap=0.0517, miss=0.8642, rot=None, epochs=2)
    run("neg", "NEGLOG", DAY2 + timedelta(minutes=30), 7, "diverged", backbone="resnet34", ap=0.0071,
        miss=0.9753, rot=95.0, epochs=2, updates={"loss.name": "qloss-neglog"}, env=environment(2))

    spec = {"name": "LS", "axes": {"loss.name": ["mse", "qloss"], "train.seed": [0, 1, 2]}}
    sweep = sweeps.open_sweep(store, "ls", spec, source="studies/ls.toml")
    for i, (loss, seed) in enumerate((l, s) for l in ("mse", "qloss") for s in range(3)):
        ap = (0.12 if loss == "mse" else 0.28) + 0.013 * seed
        key = f"ls-{loss}-{seed}"
        run(key, f"LS-{loss}-s{seed}", DAY2 + timedelta(hours=1, minutes=10 * i), 6 + seed, "completed",
            ap=ap, miss=0.5 - ap, rot=15.0 - 10 * ap, updates={"loss.name": loss, "train.seed": seed, "train.threads": 1},
            env=environment(1))
        sweeps.attach(store, ids[key], sweep.id, {"loss.name": loss, "train.seed": seed})
    # the same config typed by hand (auto threads: 2) and again on one thread: told apart by the environment only
    run("repro", "REPRO", DAY2 + timedelta(hours=3), 5, "completed", ap=0.3012, miss=0.21, rot=11.5,
        env=environment(2, chosen="auto: 2 of 2 CPUs free at load 0.3"))
    run("repro1", "REPRO_1THREAD", DAY2 + timedelta(hours=3, minutes=10), 4, "completed", ap=0.2874, miss=0.23,
        rot=12.25, updates={"train.threads": 1}, env=environment(1))
    add_tags(store, ids["agg"], ["paper", "qloss"])
    add_tags(store, ids["cont"], ["paper"])

    store.add_note("why this run: the mse baseline again", run_id=ids["mse"])
    store.add_note(LONG_NOTE, run_id=ids["cont"])
    store.add_note("GPU node down, moved to CPU")
    record_evaluation(store, ids["cont"], checkpoint=str(home / "runs" / "x" / "best-epoch011.ckpt"), split="test",
                      dataset="synthetic", data_root=None, num_images=128,
                      metrics={"iou_25": 0.763, "iou_50": 0.368, "iou_75": 0.044, "5deg_5cm": 0.072,
                               "10deg_5cm": 0.217, "10deg": 0.336, "miss_rate": 0.18,
                               "false_positive_rate": 0.456, "rot_err_median": 8.99,
                               "trans_err_median_cm": 3.8, "10deg_5cm/mug": 0.31, "10deg_5cm/can": float("nan")},
                      plot_path=str(home / "runs" / "x" / "pr-test-best.png"))
    store.close()

    ckpt = home / "runs" / store_label(home, ids["cont"]) / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "best-epoch011.ckpt").write_bytes(b"x" * 2500)
    os.link(ckpt / "best-epoch011.ckpt", ckpt / "last.ckpt")
    (ckpt / "epoch004.ckpt").write_bytes(b"x" * 1200)
    _fix_clock_and_host(home, times)
    return ids


def store_label(home: Path, run_id: int) -> str:
    import sqlite3

    with sqlite3.connect(home / "fastpose.db") as conn:
        return conn.execute("SELECT label FROM runs WHERE id = ?", (run_id,)).fetchone()[0]


def _fix_clock_and_host(home: Path, times: dict[int, tuple[datetime, datetime | None]]) -> None:
    """Every time the journal holds, and where each run ran, set to fixed values (through SQLAlchemy, so the
    stored format is the journal's own)."""
    import sqlalchemy as sa

    from fastpose.journal import models

    engine = sa.create_engine(f"sqlite:///{home / 'fastpose.db'}")
    runs, metrics, notes = models.Run.__table__, models.Metric.__table__, models.Note.__table__
    with engine.begin() as conn:
        for run_id, (start, end) in times.items():
            conn.execute(sa.update(runs).where(runs.c.id == run_id).values(
                created_at=start, started_at=start, ended_at=end, heartbeat_at=end, pid=4242, host="lab-gpu-1",
                username="ana", cwd="/home/ana/lab", proc_start=None, machine_id="m" * 32, pid_namespace=1))
            for (mid,) in conn.execute(sa.select(metrics.c.id).where(metrics.c.run_id == run_id).order_by(metrics.c.id)):
                conn.execute(sa.update(metrics).where(metrics.c.id == mid).values(logged_at=start))
        for i, (nid, run_id) in enumerate(conn.execute(sa.select(notes.c.id, notes.c.run_id).order_by(notes.c.id))):
            when = times[run_id][0] + timedelta(minutes=1) if run_id else DAY2 + timedelta(hours=5)
            conn.execute(sa.update(notes).where(notes.c.id == nid).values(created_at=when))
        for table in (models.MetricSummary.__table__, models.Evaluation.__table__, models.Sweep.__table__):
            column = "updated_at" if "updated_at" in table.c else "created_at"
            conn.execute(sa.update(table).values({column: DAY2 + timedelta(hours=6)}))
    engine.dispose()


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
