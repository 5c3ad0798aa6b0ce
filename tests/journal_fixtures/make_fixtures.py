"""Write ``rev_<REVISION>.db``: a small SQLite journal as fastpose left it at each schema revision.

    .venv/bin/python tests/journal_fixtures/make_fixtures.py 0003     # one revision (the new one)
    .venv/bin/python tests/journal_fixtures/make_fixtures.py           # every revision missing a file

A fixture, once committed, is never regenerated: it stands for journals users already have. The rows are
the tables of that revision filled the way the store of that time wrote them (UTC times, JSON config,
NaN as NULL), with the awkward values real journals hold: quotes, SQL fragments, unicode, a resumed run, a
day note, a crashed run with its traceback. ``tests/test_journal_fixtures.py`` upgrades each file to head on
SQLite and PostgreSQL and checks that every row survived. See README.md here.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the source tree's fastpose, run as a script

T0 = datetime(2026, 11, 20, 9, 15, tzinfo=timezone.utc)
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "fastpose/training/runner.py", line 88, in train\n'
    "    trainer.fit(module, datamodule)\n"
    "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
)
DIFF = "diff --git a/fastpose/pose/losses.py b/fastpose/pose/losses.py\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new 'q'\n"


def _t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def rows_0001() -> dict[str, list[dict[str, Any]]]:
    """Revision 0001: runs, git_states, metrics, notes."""
    base = {"pid": 4242, "host": "lab-gpu-1", "proc_start": 123456, "username": "ana", "cwd": "/home/ana/fastpose",
            "python_version": "3.11.9", "torch_version": "2.13.0", "lightning_version": "2.5.1"}
    runs = [
        {**base, "id": 1, "name": "MSE_BASELINE", "label": "26-11-20/09-15-MSE_BASELINE-SYNTH-resnet18-scratch",
         "status": "completed", "created_at": _t(0), "started_at": _t(0), "ended_at": _t(42), "heartbeat_at": _t(42),
         "command": "fastpose train --name MSE_BASELINE --loss mse", "parent_id": None,
         "config": {"name": "MSE_BASELINE", "loss": {"name": "mse"}, "train": {"lr": 0.002, "epochs": 3}},
         "run_dir": "/home/ana/fastpose/journal/runs/26-11-20/09-15-MSE_BASELINE-SYNTH-resnet18-scratch",
         "checkpoint": None, "error_type": None, "error_message": None, "traceback": None, "epoch": 2, "step": 30},
        {**base, "id": 2, "name": "PW_QLOSS", "label": "26-11-20/10-00-PW_QLOSS-SYNTH-resnet18-scratch",
         "status": "crashed", "created_at": _t(45), "started_at": _t(45), "ended_at": _t(47), "heartbeat_at": _t(47),
         "command": "fastpose train --name PW_QLOSS --note \"it's x'); DROP TABLE runs;--\"", "parent_id": None,
         "config": {"name": "PW_QLOSS", "note": "é ü 角度 \"quoted\""}, "run_dir": None, "checkpoint": None,
         "error_type": "RuntimeError", "error_message": "CUDA out of memory. Tried to allocate 2.00 GiB",
         "traceback": TRACEBACK, "epoch": 0, "step": 5},
        {**base, "id": 3, "name": "MSE_BASELINE", "label": "26-11-20/11-00-MSE_BASELINE-SYNTH-resnet18-scratch",
         "status": "lost", "created_at": _t(105), "started_at": _t(105), "ended_at": _t(110), "heartbeat_at": _t(110),
         "command": "fastpose resume MSE_BASELINE", "parent_id": 1, "config": {"name": "MSE_BASELINE"},
         "run_dir": None, "checkpoint": "/home/ana/fastpose/journal/runs/x/checkpoints/last.ckpt",
         "error_type": None, "error_message": "process 4242 on lab-gpu-1 is gone", "traceback": None,
         "epoch": 3, "step": 40},
        {**base, "id": 4, "name": "NEGLOG", "label": "26-11-21/08-00-NEGLOG-SYNTH-resnet18-imagenet",
         "status": "running", "created_at": _t(1365), "started_at": _t(1365), "ended_at": None,
         "heartbeat_at": _t(1366), "host": "other-host", "command": "fastpose train --name NEGLOG", "parent_id": None,
         "config": {}, "run_dir": None, "checkpoint": None, "error_type": None, "error_message": None,
         "traceback": None, "epoch": None, "step": None},
    ]
    git_states = [
        {"run_id": 1, "is_repo": True, "commit_sha": "c0ffee" + "0" * 34, "branch": "main", "dirty": True,
         "diff": DIFF, "untracked": ["scratch.py", "notes 'today'.md"], "message": "try mse", "error": None},
        {"run_id": 2, "is_repo": True, "commit_sha": "beef" + "1" * 36, "branch": None, "dirty": False,
         "diff": None, "untracked": [], "message": "detached head", "error": None},
        {"run_id": 3, "is_repo": False, "commit_sha": None, "branch": None, "dirty": False, "diff": None,
         "untracked": None, "message": None, "error": "not a git repository"},
    ]
    metrics, mid = [], 0
    for epoch, (loss, err, ap) in enumerate([(1.5, 40.0, 0.1), (0.9, 25.0, 0.3), (0.7, 18.5, None)]):
        for name, value in (("train/loss", loss), ("val/rot_err_mean", err), ("val/degree_mAP_10", ap)):
            mid += 1
            metrics.append({"id": mid, "run_id": 1, "name": name, "epoch": epoch, "step": epoch * 10 + 10,
                            "value": value, "logged_at": _t(10 + epoch * 10)})
    for i, value in enumerate([2.0, 1.75]):
        mid += 1
        metrics.append({"id": mid, "run_id": 2, "name": "train/loss", "epoch": 0, "step": i,
                        "value": value, "logged_at": _t(46)})
    mid += 1
    metrics.append({"id": mid, "run_id": 3, "name": "val/rot_err_mean", "epoch": 3, "step": 40, "value": 17.0,
                    "logged_at": _t(108)})
    notes = [
        {"id": 1, "run_id": 1, "text": "baseline plateaus at 18°", "created_at": _t(50)},
        {"id": 2, "run_id": 2, "text": "x'); DROP TABLE runs;--", "created_at": _t(51)},
        {"id": 3, "run_id": None, "text": "day note: switched to \"pw-qloss\"\nsecond line", "created_at": _t(60)},
        {"id": 4, "run_id": 3, "text": "resumed from last.ckpt", "created_at": _t(106)},
    ]
    return {"runs": runs, "git_states": git_states, "metrics": metrics, "notes": notes}


def rows_0002() -> dict[str, list[dict[str, Any]]]:
    """Revision 0002: + metric_summaries (final/best per run and metric, as log_metrics kept them)."""
    from fastpose.metrics import direction, is_better

    rows = rows_0001()
    summaries: dict[tuple[int, str], dict[str, Any]] = {}
    for m in rows["metrics"]:
        key = (m["run_id"], m["name"])
        s = summaries.get(key)
        if s is None:
            s = summaries[key] = {"id": len(summaries) + 1, "run_id": key[0], "name": key[1],
                                  "direction": direction(key[1]), "count": 0,
                                  "best": None, "best_epoch": None, "best_step": None}
        if s["best"] is None or is_better(m["name"], m["value"], s["best"]):
            s.update(best=m["value"], best_epoch=m["epoch"], best_step=m["step"])
        s.update(final=m["value"], final_epoch=m["epoch"], final_step=m["step"], count=s["count"] + 1,
                 updated_at=m["logged_at"])
    rows["metric_summaries"] = list(summaries.values())
    return rows


def rows_0003() -> dict[str, list[dict[str, Any]]]:
    """Revision 0003: + applied_writes (ids of writes made through the spool, one per write kind)."""
    rows = rows_0002()
    rows["applied_writes"] = [
        {"write_id": "3f1c" + "0" * 28, "run_id": 1, "kind": "log_metrics", "applied_at": _t(30)},
        {"write_id": "3f1c" + "1" * 28, "run_id": 1, "kind": "heartbeat", "applied_at": _t(30)},
        {"write_id": "3f1c" + "2" * 28, "run_id": 1, "kind": "finish", "applied_at": _t(42)},
        {"write_id": "3f1c" + "3" * 28, "run_id": 2, "kind": "crash", "applied_at": _t(47)},
        {"write_id": "3f1c" + "4" * 28, "run_id": None, "kind": "add_note", "applied_at": _t(60)},
    ]
    return rows


def rows_0004() -> dict[str, list[dict[str, Any]]]:
    """Revision 0004: + runs.machine_id / runs.pid_namespace; journal_identity (its one row is written by the
    migration itself, as for every journal upgraded to 0004, so it is not listed here)."""
    rows = rows_0003()
    for run in rows["runs"]:
        run["machine_id"], run["pid_namespace"] = None, None
    rows["runs"][0].update(machine_id="0f5c2a9e" * 4, pid_namespace=4026531836)
    rows["runs"][3].update(machine_id="boot:6b1d" + "e" * 23, pid_namespace=4026532299)
    return rows


def rows_0005() -> dict[str, list[dict[str, Any]]]:
    """Revision 0005: + sweeps, sweep_runs (runs 1 and 3 are one cell: a run and its resumed continuation;
    run 2 another cell of the same sweep), run_tags (the sweep id on its cells, free tags with every punctuation a tag allows)."""
    rows = rows_0004()
    spec = {"name": "MSE_SWEEP", "base": {"train": {"epochs": 3}}, "axes": {"loss.name": ["mse", "pw-qloss"],
            "train.seed": [0]}, "tags": ["paper 'draft'"], "slurm": {"partition": "gpu"}}
    rows["sweeps"] = [{"id": 1, "name": "loss_study", "spec": spec, "source": "/home/ana/studies/loss_study.toml",
                       "created_at": _t(-1)}]
    mse = '{"loss.name": "mse", "train.seed": 0}'
    rows["sweep_runs"] = [
        {"run_id": 1, "sweep_id": 1, "cell": mse, "group_key": '{"loss.name": "mse"}'},
        {"run_id": 3, "sweep_id": 1, "cell": mse, "group_key": '{"loss.name": "mse"}'},
        {"run_id": 2, "sweep_id": 1, "cell": '{"loss.name": "pw-qloss", "train.seed": 0}',
         "group_key": '{"loss.name": "pw-qloss"}'},
    ]
    rows["run_tags"] = [
        {"run_id": 1, "tag": "loss_study"}, {"run_id": 2, "tag": "loss_study"}, {"run_id": 3, "tag": "loss_study"},
        {"run_id": 1, "tag": "baseline"}, {"run_id": 4, "tag": "ablation/v2:lr=3e-3"},
    ]
    return rows


def rows_0006() -> dict[str, list[dict[str, Any]]]:
    """Revision 0006: + evaluations (``fastpose eval``: a checkpoint on a split, NOCS metrics as JSON, NaN as null)."""
    rows = rows_0005()
    rows["evaluations"] = [
        {"id": 1, "run_id": 1, "created_at": _t(50), "checkpoint": "runs/x/checkpoints/best-epoch003.ckpt",
         "split": "val", "dataset": "synthetic", "data_root": None, "num_images": 128,
         "metrics": {"10deg_5cm": 0.25, "10deg_5cm/mug": 0.5, "10deg_5cm/can": None, "miss_rate": 0.125,
                     "rot_err_median": 7.5, "iou_50": 0.375},
         "plot_path": "runs/x/pr-val-best-epoch003.png"},
        {"id": 2, "run_id": 1, "created_at": _t(55), "checkpoint": "/data/ckpt 'quoted'; DROP TABLE runs.ckpt",
         "split": "test", "dataset": "nocs", "data_root": "/data/NOCS ünïcode", "num_images": 3,
         "metrics": {}, "plot_path": None},
    ]
    return rows


def rows_0007() -> dict[str, list[dict[str, Any]]]:
    """Revision 0007: + source_states (the fastpose code a run ran: an editable checkout outside the working
    directory with its diff, one that is the working directory's repository, an installed package)."""
    rows = rows_0006()
    rows["source_states"] = [
        {"run_id": 1, "fastpose_version": "0.1.0", "location": "/home/ana/src/fastpose ünï/fastpose", "is_repo": True,
         "same_as_cwd": False, "commit_sha": "f" * 40, "branch": "fix/'quoted'", "dirty": True,
         "diff": "diff --git a/fastpose/pose/losses.py b/fastpose/pose/losses.py\n+eps = 1e-2  -- '; DROP TABLE runs\n",
         "untracked": ["notes ü.txt"], "message": "loss: clamp", "error": None},
        {"run_id": 2, "fastpose_version": "0.1.0", "location": "/home/ana/lab/fastpose", "is_repo": True,
         "same_as_cwd": True, "commit_sha": "e" * 40, "branch": None, "dirty": False, "diff": None,
         "untracked": [], "message": "detached", "error": None},
        {"run_id": 3, "fastpose_version": "0.1.0.dev3", "location": "/opt/venv/lib/python3.11/site-packages/fastpose",
         "is_repo": False, "same_as_cwd": False, "commit_sha": None, "branch": None, "dirty": False, "diff": None,
         "untracked": None, "message": None, "error": "installed package, not a git checkout"},
    ]
    return rows


def rows_0008() -> dict[str, list[dict[str, Any]]]:
    """Revision 0008: + sweep_claims (a cell held by a sweep process on another machine, as a journal keeps one
    whose holder was killed; a cell held by a requeued cluster job; a variant cell with quotes in its key)."""
    rows = rows_0007()
    rows["sweep_claims"] = [
        {"sweep_id": 1, "cell": '{"loss.name": "pw-qloss", "train.seed": 0}', "token": "5eed" + "a" * 28,
         "holder": "sweep pid 4242 on lab-gpu-1", "job": None, "pid": 4242, "host": "lab-gpu-1",
         "proc_start": 1795166100123, "machine_id": "0f5c2a9e" * 4, "pid_namespace": 4026531836,
         "claimed_at": _t(100), "heartbeat_at": _t(101)},
        {"sweep_id": 1, "cell": '{"loss.name": "mse", "train.seed": 0}', "token": "5eed" + "b" * 28,
         "holder": "job 81723_4 (pid 77 on node-07)", "job": "81723_4", "pid": 77, "host": "node-07",
         "proc_start": None, "machine_id": None, "pid_namespace": None, "claimed_at": _t(102), "heartbeat_at": _t(130)},
        {"sweep_id": 1, "cell": '{"arm": "it\'s \\"q\\"; DROP TABLE runs;--", "train.seed": 1}', "token": "5eed" + "c" * 28,
         "holder": "sweep pid 9 on lab-ünï", "job": None, "pid": 9, "host": "lab-ünï", "proc_start": 1795166200000,
         "machine_id": "boot:6b1d" + "e" * 23, "pid_namespace": 4026532299, "claimed_at": _t(140), "heartbeat_at": _t(140)},
    ]
    return rows


def rows_0009() -> dict[str, list[dict[str, Any]]]:
    """Revision 0009: + runs.environment and runs.deleted_at (a run with its environment recorded, one deleted,
    the older runs with neither)."""
    rows = rows_0008()
    env = {"threads": {"torch_intra_op": 2, "torch_inter_op": 2, "OMP_NUM_THREADS": None, "MKL_NUM_THREADS": None},
           "device": {"accelerator": "cpu", "name": "AMD EPYC \"Genoa\" ünï", "count": 1},
           "precision": "32-true", "backends": {"cudnn_benchmark": False, "cudnn_deterministic": False,
                                                "allow_tf32_matmul": False, "deterministic_algorithms": False},
           "versions": {"torch": "2.13.0+cpu", "lightning": "2.6.6", "numpy": "2.2.1", "cuda": None, "cudnn": None}}
    for run in rows["runs"]:
        run["environment"], run["deleted_at"] = None, None
    rows["runs"][0]["environment"] = env
    rows["runs"][1]["deleted_at"] = _t(500)
    return rows


def rows_0010() -> dict[str, list[dict[str, Any]]]:
    """Revision 0010: + runs.reproduces_id (run 4 reproduces run 1), gc_removals (a deleted run's directory gc
    was killed while removing, a pruned checkpoint of a kept run), untracked_files (bytes that are not UTF-8, a
    name with quotes, an executable script)."""
    rows = rows_0009()
    for run in rows["runs"]:
        run["reproduces_id"] = None
    rows["runs"][3]["reproduces_id"] = 1
    rows["gc_removals"] = [
        {"id": 1, "run_id": 2, "kind": "run_dir", "path": "/home/ana/fastpose/journal/runs/26-11-20/10-00-PW_QLOSS 'x'",
         "bytes": 71_234_567, "purge": True, "planned_at": _t(600), "done_at": None},
        {"id": 2, "run_id": 1, "kind": "checkpoint",
         "path": "/home/ana/fastpose/journal/runs/26-11-20/09-15-MSE_BASELINE-SYNTH-resnet18-scratch/checkpoints/epoch001.ckpt",
         "bytes": 34_500_000, "purge": False, "planned_at": _t(601), "done_at": _t(602)},
    ]
    rows["untracked_files"] = [
        {"run_id": 1, "tree": "cwd", "path": "scratch.py", "size": 23, "mode": 0o644,
         "content": b"print('scratch \xc3\xa9')\n"},
        {"run_id": 1, "tree": "cwd", "path": "notes 'today'.md", "size": 4, "mode": 0o755,
         "content": b"\xff\x00\xfe\n"},
        {"run_id": 1, "tree": "source", "path": "notes ü.txt", "size": 0, "mode": 0o600, "content": b""},
    ]
    for row in rows["untracked_files"]:
        row["size"] = len(row["content"])
    return rows


# One entry per revision: add ``"000N": rows_000N`` with every new revision (see README.md).
ROWS = {"0001": rows_0001, "0002": rows_0002, "0003": rows_0003, "0004": rows_0004, "0005": rows_0005, "0006": rows_0006,
        "0007": rows_0007, "0008": rows_0008, "0009": rows_0009, "0010": rows_0010}


def write_fixture(revision: str, path: Path) -> None:
    """An empty SQLite journal upgraded to ``revision``, filled with ``ROWS[revision]()``."""
    import sqlalchemy as sa
    from alembic import command

    from fastpose.journal import db

    if path.exists():
        raise SystemExit(f"{path} exists; fixtures are never regenerated (delete it by hand if it is new)")
    url = f"sqlite:///{path}"
    engine = db._migration_engine(url)
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(url, conn), revision)
    meta = sa.MetaData()
    meta.reflect(engine)
    data = ROWS[revision]()
    with engine.begin() as conn:
        for table in meta.sorted_tables:
            if table.name in data:
                conn.execute(table.insert(), data[table.name])
    missing = set(data) - set(meta.tables)
    if missing:
        raise SystemExit(f"revision {revision} has no tables {sorted(missing)}")
    engine.dispose()
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)  # one self-contained file, no -wal beside it
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("VACUUM")
    conn.close()
    print(f"wrote {path} ({path.stat().st_size} bytes): "
          + ", ".join(f"{t} {len(r)}" for t, r in data.items()))


def main(argv: list[str]) -> None:
    revisions = argv or [rev for rev in ROWS if not (HERE / f"rev_{rev}.db").exists()]
    for rev in revisions:
        if rev not in ROWS:
            raise SystemExit(f"no rows for revision {rev}: add rows_{rev}() and ROWS[{rev!r}] in {__file__}")
        write_fixture(rev, HERE / f"rev_{rev}.db")


if __name__ == "__main__":
    main(sys.argv[1:])
