"""`fastpose sweep` end to end: real tiny cells through the real CLI, a real journal, real signals.

Each cell is 16 images of 32x32 in batches of 8 (two steps an epoch). The slow tests share one 2 x 2 sweep
(module fixture); the fault test slows its steps through $FASTPOSE_FAULT so the signals land mid-training.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SWEEP = """
name = "SW"
[data]
image_size = 32
train_size = 16
val_size = 8
[train]
epochs = {epochs}
batch_size = 8
log_images = 0
[sweep]
id = "{sweep_id}"
tags = ["tiny"]
"loss.name" = ["mse", "qloss"]
"train.seed" = [0, 1]
"""


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FASTPOSE_JOURNAL_URL", "FASTPOSE_FAULT", "FASTPOSE_HOME")}
    env.update(FASTPOSE_HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    return env


def fastpose(home: Path, *args: str, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastpose", *args], env=env_for(home, **extra),
                          capture_output=True, text=True, timeout=timeout)


def reader_at(home: Path):
    from fastpose.journal.access import open_reader

    return open_reader(f"sqlite:///{home / 'fastpose.db'}")


def sweep_file(tmp: Path, sweep_id: str, epochs: int = 2) -> Path:
    path = tmp / f"{sweep_id}.toml"
    path.write_text(SWEEP.format(epochs=epochs, sweep_id=sweep_id))
    return path


@pytest.fixture(scope="module")
def done_sweep(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A finished 2 x 2 sweep run with --jobs 2: (home, sweep file, the sweep's process)."""
    tmp = tmp_path_factory.mktemp("sweep")
    home = tmp / "home"
    path = sweep_file(tmp, "grid")
    return home, path, fastpose(home, "sweep", str(path), "--jobs", "2")


@pytest.mark.slow
def test_a_2x2_sweep_journals_4_runs_with_sweep_id_and_groups(done_sweep) -> None:
    home, path, proc = done_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4/4 completed" in proc.stdout and "1 thread(s) each" in proc.stdout
    from fastpose.journal.sweeps import cell_runs, get_sweep
    from fastpose.journal.tags import run_tags

    reader = reader_at(home)
    try:
        runs = reader.list_runs()
        sweep = get_sweep(reader, "grid")
        cells = cell_runs(reader, sweep.id)
        tags = run_tags(reader, [r.id for r in runs])
    finally:
        reader.close()
    assert sorted(r.name for r in runs) == ["SW-mse-seed0", "SW-mse-seed1", "SW-qloss-seed0", "SW-qloss-seed1"]
    assert all(r.status == "completed" and r.epoch == 1 for r in runs)
    assert sorted(c.group_key for c in cells) == ['{"loss.name": "mse"}'] * 2 + ['{"loss.name": "qloss"}'] * 2
    for run in runs:  # the run's own config is the cell's; its threads the sweep's split, in its command line
        assert run.name == f"SW-{run.config['loss']['name']}-seed{run.config['train']['seed']}"
        assert run.command.endswith(" --threads 1") and run.config["train"]["threads"] == 1
        assert run.environment["threads"] == {**run.environment["threads"], "torch_intra_op": 1, "chosen": "--threads"}
        assert tags[run.id] == ["grid", "tiny"]
        assert (home / "sweeps" / "grid" / "logs" / f"{run.name}.log").is_file()
    assert sweep.spec["axes"] == {"loss.name": ["mse", "qloss"], "train.seed": [0, 1]}

    # Nothing left to do: no duplicate cells. On an 80-column terminal each cell and its note keep their line.
    again = fastpose(home, "sweep", str(path), "--jobs", "2", COLUMNS="80")
    assert again.returncode == 0, again.stderr
    assert "4/4 completed" in again.stdout and again.stdout.count("completed (run #") == 4, again.stdout
    for run in runs:
        assert f"{run.name}: completed (run #{run.id})" in again.stdout, again.stdout
    assert max(len(line) for line in again.stdout.splitlines()) <= 80, again.stdout
    by_id = fastpose(home, "sweep", "--resume", "grid")  # the same from the journal, without the file
    assert by_id.returncode == 0 and "4/4 completed" in by_id.stdout, by_id.stderr
    unknown = fastpose(home, "sweep", "--resume", "gird")
    assert unknown.returncode == 2 and "no sweep 'gird'; closest: grid" in unknown.stderr, unknown.stderr
    reader = reader_at(home)
    assert len(reader.list_runs()) == 4
    reader.close()
    sweeps = json.loads(fastpose(home, "journal", "sweeps", "--json").stdout)
    assert [(s["sweep"], s["cells"], s["completed"], s["failed"]) for s in sweeps] == [("grid", 4, 4, 0)]


def _wait(predicate, proc: subprocess.Popen | None, timeout: float = 300, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"sweep ended early ({proc.returncode}) waiting for {what}:\n{proc.stdout.read()[-3000:]}")
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _runs(home: Path) -> list:
    if not (home / "fastpose.db").exists():
        return []
    reader = reader_at(home)
    try:
        return reader.list_runs()
    finally:
        reader.close()


def _has_checkpoint(run) -> bool:  # noqa: ANN001
    return bool(run.run_dir) and (Path(run.run_dir) / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_ctrl_c_interrupts_every_cell_and_sigkill_then_rerun_finishes_exactly_the_4_cells(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = sweep_file(tmp_path, "killed", epochs=8)
    slow = {"FASTPOSE_FAULT": "sleep:0.2@step:0"}

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "fastpose", "sweep", str(path), "--jobs", "2"],
                                env=env_for(home, **slow), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # 1. Ctrl-C (SIGINT to the sweep alone: the cells run in their own sessions) once two cells have a checkpoint.
    proc = start()
    try:
        _wait(lambda: sum(_has_checkpoint(r) for r in _runs(home)) >= 2, proc, what="two checkpoints")
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 130, out[-3000:]
    first = _runs(home)
    assert len(first) == 2 and all(r.status == "interrupted" for r in first), [(r.name, r.status) for r in first]

    # 2. Rerun: the two interrupted cells resume, the two others start; SIGKILL the sweep once a resumed cell
    # has trained an epoch. Its cells die with it (SIGTERM from the kernel): interrupted, with checkpoints.
    proc = start()
    try:
        _wait(lambda: any(r.parent_id and r.epoch is not None and r.epoch >= 2 for r in _runs(home)), proc,
              what="a resumed cell in its third epoch")  # of 8
        proc.kill()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    _wait(lambda: all(r.status != "running" for r in _runs(home)), None, timeout=120, what="the cells to stop")
    second = _runs(home)
    assert {r.status for r in second} <= {"interrupted", "completed"}, [(r.name, r.status) for r in second]
    assert any(r.status == "interrupted" for r in second)

    # 3. The same command again (at full speed) finishes the sweep: exactly one completed run per cell.
    done = fastpose(home, "sweep", str(path), "--jobs", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = _runs(home)
    completed = [r for r in runs if r.status == "completed"]
    assert sorted(r.name for r in completed) == ["SW-mse-seed0", "SW-mse-seed1", "SW-qloss-seed0", "SW-qloss-seed1"]
    assert all(r.status in ("completed", "interrupted") for r in runs)
    by_id = {r.id: r for r in runs}
    reader = reader_at(home)
    try:
        for run in completed:
            epochs = sorted(p.epoch for p in reader.metric_history(run.id) if p.name == "train/loss")
            if run.parent_id is None:
                assert epochs == list(range(8)), (run.name, epochs)
                continue
            # a continuation: it starts where its parent's checkpoint stopped, and ends at the last epoch
            parent = by_id[run.parent_id]
            assert parent.status == "interrupted" and parent.name == run.name
            assert epochs and epochs[0] >= 1 and epochs[-1] == 7, (run.name, epochs)
        assert sum(r.parent_id is not None for r in completed) >= 1
    finally:
        reader.close()


BAD = {
    "unknown key": ('name = "B"\n[sweep]\n"loss.nme" = ["mse"]\n', "unknown key 'loss.nme'"),
    "unknown table": ('name = "B"\n[sweeps]\n"loss.name" = ["mse"]\n', "unknown key 'sweeps'"),
    "empty axis": ('name = "B"\n[sweep]\n"train.seed" = []\n', "axis 'train.seed' is empty"),
    "not a list": ('name = "B"\n[sweep]\n"train.seed" = 3\n', "must be a list"),
    "wrong type": ('name = "B"\n[sweep]\n"train.lr" = ["fast"]\n', "config key 'train.lr' must be a number"),
    "wrong base type": ('name = "B"\n[train]\nepochs = "2"\n[sweep]\n"train.seed" = [0]\n', "config key 'train.epochs' must be an integer"),
    "bad value": ('name = "B"\n[sweep]\n"loss.name" = ["mse", "l2"]\n', "unknown loss 'l2'"),
    "no axes": ('name = "B"\n[sweep]\nid = "x"\n', "has no axis"),
    "no name": ('[sweep]\n"train.seed" = [0]\n', "needs a run NAME"),
    "bad slurm": ('name = "B"\n[sweep]\n"train.seed" = [0]\n[slurm]\ngpus = 2\n', "[slurm] unknown key 'gpus'"),
    "malformed": ('name = "B"\n[sweep\n', "malformed TOML"),
    "tune without grid": ('name = "B"\n[sweep]\n"train.seed" = [0]\n[tune]\n"train.epochs" = 1\n', "[tune] has no tuning axis"),
    "tune twice": ('name = "B"\n[sweep]\n"loss.rot_weight" = [1.0]\n[tune]\n"loss.rot_weight" = [0.1]\n',
                   "both a [sweep] axis and a [tune] key"),
    "tune a seed": ('name = "B"\n[sweep]\n"loss.name" = ["mse"]\n[tune]\n"train.seed" = [0, 1]\n', "cannot tune a seed"),
    "variant unknown key": ('name = "B"\n[sweep]\narm = [{ "loss.name" = "mse" }, { "loss.nam" = "qloss" }]\n',
                            "variant axis 'arm': unknown key 'loss.nam'"),
    "variant seed": ('name = "B"\n[sweep]\narm = [{ "train.seed" = 1 }]\n', "sets a seed"),
    "tune bad type": ('name = "B"\n[sweep]\n"train.seed" = [0]\n[tune]\n"loss.rot_weight" = [0.1]\n"train.epochs" = "1"\n',
                      "config key 'train.epochs' must be an integer"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_sweep_files_are_one_line_exit_2_and_write_nothing(case: str, tmp_path: Path) -> None:
    text, message = BAD[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    home = tmp_path / "home"
    proc = fastpose(home, "sweep", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert not home.exists()


TUNED = """
name = "TU"
[data]
image_size = 32
train_size = 16
val_size = 8
[train]
epochs = 2
batch_size = 8
log_images = 0
[sweep]
id = "tuned"
"loss.name" = ["mse"]
"train.seed" = [0, 1]
[tune]
"loss.rot_weight" = [0.1, 3.0]
"train.epochs" = 1
"""


@pytest.mark.slow
def test_a_tune_stage_chooses_on_the_tune_split_then_runs_the_seeds_at_the_choice(tmp_path: Path) -> None:
    path = tmp_path / "tuned.toml"
    path.write_text(TUNED)
    home = tmp_path / "home"
    proc = fastpose(home, "sweep", str(path), "--jobs", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "chosen" in proc.stderr, proc.stderr
    reader = reader_at(home)
    try:
        runs = {r.name: r for r in reader.list_runs()}
        tuning = [r for n, r in runs.items() if "-tune-" in n]
        final = [r for n, r in runs.items() if "-tune-" not in n]
        assert sorted(r.name for r in tuning) == ["TU-mse-tune-rot_weight0.1-seed0", "TU-mse-tune-rot_weight3.0-seed0"]
        assert all(r.status == "completed" for r in runs.values()) and len(final) == 2
        for r in tuning:  # the tuning budget, validated on the tune split
            assert r.config["data"]["val_split"] == "tune" and r.config["train"]["epochs"] == 1
        # the choice, recomputed here from the journal: the better best value of the primary metric
        from fastpose.metrics import is_better, primary_metric

        metric = primary_metric(tuning[0].config)
        summaries = reader.metric_summaries([r.id for r in tuning])
        best = None
        for r in sorted(tuning, key=lambda r: r.config["loss"]["rot_weight"]):
            value = summaries[r.id][metric].best
            if best is None or is_better(metric, value, best[1]):
                best = (r.config["loss"]["rot_weight"], value)
        for r in final:
            assert r.config["data"]["val_split"] == "val" and r.config["train"]["epochs"] == 2
            assert r.config["loss"]["rot_weight"] == best[0], (r.name, best)
        assert sorted(r.config["train"]["seed"] for r in final) == [0, 1]
    finally:
        reader.close()
    again = fastpose(home, "sweep", str(path), "--jobs", "2")  # resumable: nothing left to run
    assert again.returncode == 0 and "2/2 completed" in again.stdout, again.stdout + again.stderr
    reader = reader_at(home)
    try:
        assert len(reader.list_runs()) == 4
    finally:
        reader.close()
    groups = fastpose(home, "compare", "--sweep", "tuned", "--json")
    assert groups.returncode == 0, groups.stderr
    data = json.loads(groups.stdout)
    assert [g["group"] for g in data["groups"]] == [f"loss.name=mse, loss.rot_weight={best[0]}"], data["groups"]
    assert any("2 tuning cells" in line for line in data["left_out"]), data["left_out"]
    tuned = fastpose(home, "compare", "--sweep", "tuned", "--tuning", "--json")
    assert tuned.returncode == 0 and len(json.loads(tuned.stdout)["groups"]) == 2, tuned.stdout + tuned.stderr


def test_variant_axes_give_combinations_that_are_not_a_product(tmp_path: Path) -> None:
    from fastpose.studies.spec import load_sweep

    path = tmp_path / "arms.toml"
    path.write_text('name = "A"\n[sweep]\n'
                    'arm = [{ "loss.name" = "mse" }, { loss = { name = "geodesic", rot_weight = 1.0 } }]\n'
                    '"train.seed" = [0, 1]\n')
    spec = load_sweep(path)
    cells = spec.cells()
    assert [c.name for c in cells] == ["A-mse-seed0", "A-mse-seed1", "A-geodesic-rot_weight1.0-seed0",
                                       "A-geodesic-rot_weight1.0-seed1"]
    assert [(c.config.loss.name, c.config.loss.rot_weight, c.config.train.seed) for c in cells] == [
        ("mse", 0.3, 0), ("mse", 0.3, 1), ("geodesic", 1.0, 0), ("geodesic", 1.0, 1)]
    assert spec.group_order() == ['{"loss.name": "mse"}', '{"loss.name": "geodesic", "loss.rot_weight": 1.0}']


def test_the_tune_split_is_its_own_images() -> None:
    from fastpose.config import RunConfig
    from fastpose.training.datamodule import build_datasets

    config = RunConfig.from_dict({"data": {"image_size": 32, "train_size": 2, "val_size": 2}})
    val = build_datasets(config)[1]
    tune = build_datasets(config.override({"data.val_split": "tune"}))[1]
    assert (val.seed, tune.seed) == (config.data.seed + 1, config.data.seed + 3)
    assert not val[0]["image"].equal(tune[0]["image"])


def test_slurm_on_sqlite_is_refused_saying_why(tmp_path: Path) -> None:
    path = sweep_file(tmp_path, "cluster")
    home = tmp_path / "home"
    proc = fastpose(home, "sweep", str(path), "--launcher", "slurm")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "needs a PostgreSQL journal" in proc.stderr and "SQLite" in proc.stderr
    assert not home.exists()


def test_dry_run_prints_the_cells_and_writes_nothing(tmp_path: Path) -> None:
    path = sweep_file(tmp_path, "dry")
    home = tmp_path / "home"
    proc = fastpose(home, "sweep", str(path), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    for name in ("SW-mse-seed0", "SW-mse-seed1", "SW-qloss-seed0", "SW-qloss-seed1"):
        assert name in proc.stdout
    assert "4 cells" in proc.stdout and not home.exists()


def test_a_changed_sweep_file_under_the_same_id_is_refused(tmp_path: Path) -> None:
    from fastpose.journal.store import JournalStore
    from fastpose.journal.sweeps import open_sweep
    from fastpose.studies.spec import load_sweep

    home = tmp_path / "home"
    home.mkdir()
    spec = load_sweep(sweep_file(tmp_path, "same"))
    with JournalStore.open(f"sqlite:///{home / 'fastpose.db'}") as store:
        open_sweep(store, spec.id, spec.to_json(), spec.source)
    path = tmp_path / "same.toml"
    path.write_text(path.read_text().replace('"train.seed" = [0, 1]', '"train.seed" = [0, 1, 2]'))
    proc = fastpose(home, "sweep", str(path))
    assert proc.returncode == 2 and "already exists in the journal with another axes" in proc.stderr, proc.stderr
    assert not (home / "sweeps").exists()


@pytest.mark.slow
def test_submitit_local_executor_runs_a_2_cell_sweep_end_to_end(tmp_path: Path) -> None:
    """--launcher slurm through submitit, with its LocalExecutor standing in for the cluster, into PostgreSQL."""
    from conftest import drop_pg_database, fresh_pg_database, pg_admin_engine

    admin = pg_admin_engine()
    url = fresh_pg_database(admin)
    try:
        path = tmp_path / "cluster.toml"
        path.write_text(SWEEP.format(epochs=1, sweep_id="cluster").replace('"train.seed" = [0, 1]\n', "")
                        + "[slurm]\ntime = 10\ncpus_per_task = 1\n")
        home = tmp_path / "home"
        proc = fastpose(home, "sweep", str(path), "--launcher", "slurm", FASTPOSE_JOURNAL_URL=url,
                        FASTPOSE_SUBMITIT_CLUSTER="local")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "2/2 completed" in proc.stdout and "submitit local: 2 job(s)" in proc.stdout
        from fastpose.journal.store import JournalStore
        from fastpose.journal.sweeps import cell_runs, get_sweep

        with JournalStore.open(url) as store:
            runs = store.list_runs()
            cells = cell_runs(store, get_sweep(store, "cluster").id)
        assert sorted(r.name for r in runs) == ["SW-mse", "SW-qloss"]
        assert all(r.status == "completed" for r in runs)
        assert sorted(c.group_key for c in cells) == ['{"loss.name": "mse"}', '{"loss.name": "qloss"}']
        # submitit's own records: one folder per job, with the pickled result of CellJob
        results = list((home / "sweeps" / "cluster" / "submitit").glob("*/*_result.pkl"))
        assert len(results) == 2
        again = fastpose(home, "sweep", str(path), "--launcher", "slurm", FASTPOSE_JOURNAL_URL=url,
                         FASTPOSE_SUBMITIT_CLUSTER="local")
        assert again.returncode == 0 and "0 job(s)" in again.stdout, again.stdout
    finally:
        drop_pg_database(admin, url)
        admin.dispose()


@pytest.mark.slow
def test_cluster_started_ranks_take_the_ddp_spec_from_rank_zeros_file(tmp_path: Path) -> None:
    """srun starts every rank itself (no inherited environment): rank zero writes $FASTPOSE_DDP_SPEC_FILE,
    another rank waits for it and trains that run without journaling a second one."""
    home = tmp_path / "home"
    spec_file = tmp_path / "ddp" / "job-0.spec.json"
    tiny = ["--image-size", "32", "--train-size", "16", "--val-size", "8", "--batch-size", "8", "--epochs", "1",
            "--no-progress", "--log-images", "0", "--name", "RANKS"]
    rank0 = fastpose(home, "train", *tiny, FASTPOSE_DDP_SPEC_FILE=str(spec_file))
    assert rank0.returncode == 0, rank0.stderr[-2000:]
    spec = json.loads(spec_file.read_text())
    run = _runs(home)[0]
    assert spec["run_dir"] == run.run_dir and spec["config"]["name"] == "RANKS"
    rank1 = fastpose(home, "train", *tiny, FASTPOSE_DDP_SPEC_FILE=str(spec_file), RANK="1")
    assert rank1.returncode == 0, rank1.stderr[-2000:]
    assert len(_runs(home)) == 1  # the other rank journals nothing
    missing = fastpose(home, "train", *tiny, FASTPOSE_DDP_SPEC_FILE=str(tmp_path / "none.json"), RANK="1",
                       FASTPOSE_DDP_SPEC_WAIT_S="1")
    assert missing.returncode == 2 and "rank 1: rank zero wrote no spec" in missing.stderr, missing.stderr
