"""What changes a run's numbers besides its config and code: recorded with every run, shown by ``journal show``
and ``compare``, carried over by ``train --from`` and ``resume``.

Threads are chosen by the real rule (``fastpose.environment``) in real processes, their CPUs limited with the
kernel's affinity mask (``sched_setaffinity``, as ``taskset`` does); runs train for real on tiny data.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fastpose.journal.store import JournalStore

TINY = ["--image-size", "32", "--train-size", "16", "--val-size", "8", "--batch-size", "8", "--no-progress",
        "--log-images", "0", "--accelerator", "cpu"]
LABEL = "26-12-01/10-00-{}-SYNTHETIC-resnet18-scratch"


def env_of(threads: int, *, name: str = "AMD EPYC", torch: str = "2.13.0+cpu") -> dict:
    """A run's environment as ``fastpose.training.machine.environment`` records it."""
    return {"threads": {"torch_intra_op": threads, "torch_inter_op": threads, "OMP_NUM_THREADS": str(threads),
                        "MKL_NUM_THREADS": str(threads), "cpus": 2, "chosen": "--threads"},
            "device": {"accelerator": "cpu", "name": name, "count": 1}, "precision": "32-true",
            "backends": {"cudnn_benchmark": False, "cudnn_deterministic": False, "allow_tf32_matmul": False,
                         "allow_tf32_cudnn": True, "float32_matmul_precision": "highest",
                         "deterministic_algorithms": "warn"},
            "versions": {"torch": torch, "lightning": "2.6.6", "numpy": "2.4.6", "cuda": None, "cudnn": None,
                         "python": "3.11.7"},
            "recorded": "at fit start"}


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTPOSE_JOURNAL_URL", "FASTPOSE_FAULT", "FASTPOSE_HOME", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(FASTPOSE_HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    return env


def one_cpu() -> None:  # runs in the child between fork and exec: the kernel's affinity mask, as taskset sets it
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def fastpose(home: Path, *args: str, cpus_one: bool = False, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastpose", *args], env=cli_env(home, **extra), capture_output=True,
                          text=True, timeout=600, preexec_fn=one_cpu if cpus_one else None)


def python(code: str, *, cpus_one: bool = False, **extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                          timeout=120, preexec_fn=one_cpu if cpus_one else None)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def store_at(home: Path) -> JournalStore:
    return JournalStore.open(f"sqlite:///{home / 'fastpose.db'}")


# ------------------------------------------------------------------------------------------ the journal


def test_a_runs_environment_is_kept_replaced_once_and_refused_when_not_json(journal_store: JournalStore,
                                                                              tmp_path: Path) -> None:
    from fastpose.errors import FastposeError
    from fastpose.journal.spool import SPOOL_NAME, append_spool, replay_spool

    first = env_of(2)
    run = journal_store.start_run(name="ENV", label=LABEL.format("ENV"), environment=first)
    assert journal_store.get_run(run.id).environment == first
    bare = journal_store.start_run(name="BARE", label=LABEL.format("BARE"))
    assert journal_store.get_run(bare.id).environment is None  # "not recorded", not an empty environment

    # the fit-start update goes through the run's spool when the journal is away: replayed exactly once
    spool = tmp_path / "run" / SPOOL_NAME
    record = {"id": "env-1", "kind": "set_environment", "run_id": run.id, "at": datetime.now(timezone.utc).isoformat(),
              "args": {"environment": env_of(1)}}
    append_spool(spool, record)
    saved = spool.read_bytes()
    assert replay_spool(journal_store, spool) == (1, 0, 0)
    spool.write_bytes(saved)
    before = journal_store.counts()
    assert replay_spool(journal_store, spool) == (1, 0, 0) and journal_store.counts() == before
    assert journal_store.get_run(run.id).environment == env_of(1)

    with pytest.raises(FastposeError, match="not set"):
        journal_store.set_environment(run.id, {"threads": {1, 2}})
    with pytest.raises(FastposeError, match="not float"):
        journal_store.set_environment(run.id, {"x": float("nan")})
    assert journal_store.get_run(run.id).environment == env_of(1)  # nothing written


# ------------------------------------------------------------------------------------------ threads


def test_threads_given_from_omp_or_the_free_cpus_at_most_four() -> None:
    code = "from fastpose.environment import choose_threads as c, auto_threads as a; print({a})"
    assert python(code.format(a="c(3)")) == "(3, '--threads')"
    assert python(code.format(a="c(0)"), OMP_NUM_THREADS="5") == "(5, 'OMP_NUM_THREADS')"
    cpus = len(os.sched_getaffinity(0))
    for jobs in (1, 2, 3):
        threads, why = eval(python(code.format(a=f"a({jobs})")))  # noqa: S307 - our own repr
        free, total, load = re.fullmatch(r"auto: (\d+) of (\d+) CPUs free at load ([\d.]+).*", why).groups()
        assert int(total) == cpus and int(free) == max(1, cpus - min(cpus, int(float(load) + 0.5)))
        assert threads == max(1, min(4, int(free) // jobs)), why
    # one CPU in the affinity mask: one thread, whatever the load
    assert eval(python(code.format(a="c(0)"), cpus_one=True))[0] == 1  # noqa: S307


def test_carried_threads_are_the_count_used_and_fewer_cpus_say_so() -> None:
    code = ("from fastpose.environment import carry_threads as c; import json, sys; "
            "print(json.dumps(c(*json.loads(sys.argv[1]))))")

    def carry(environment, config, cpus_one=False):  # noqa: ANN001, ANN202
        args = json.dumps([environment, config, "run 7"])
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
        proc = subprocess.run([sys.executable, "-c", code, args], env=env, capture_output=True, text=True,
                              timeout=120, preexec_fn=one_cpu if cpus_one else None)
        assert proc.returncode == 0, proc.stderr
        return tuple(json.loads(proc.stdout))

    assert carry(env_of(1), {"train": {"threads": 0}}) == (1, None)
    threads, note = carry(env_of(8), {"train": {"threads": 0}}, cpus_one=True)
    assert threads == 1 and note == ("run 7 trained on 8 threads; this process may use 1 CPUs: training on 1 "
                                     "(numbers may differ from run 7's; --threads 8 uses 8 anyway)")
    assert carry(None, {"train": {"threads": 1}}) == (1, None)  # no environment: the count its config set
    assert carry(None, {"train": {}}) == (0, "run 7 recorded no thread count: threads chosen as for a new run")


def test_the_gpu_warning_is_never_filtered_and_auto_is_the_default_accelerator(tmp_path: Path) -> None:
    from fastpose.config import RunConfig
    from fastpose.training.runner import _quiet_warnings

    assert RunConfig().train.accelerator == "auto" and RunConfig().train.threads == 0
    with warnings.catch_warnings(record=True) as seen:
        _quiet_warnings()
        warnings.warn("GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`.", UserWarning)
    assert any("GPU available but not used" in str(w.message) for w in seen)
    text = " ".join(fastpose(tmp_path, "train", "--help").stdout.split())
    assert "--accelerator <str> Lightning accelerator: auto (a GPU where there is one, else the CPU)" in text, text
    assert re.search(r"--accelerator <str> [^[]*\[default: auto\]", text), text
    assert re.search(r"--threads <int> CPU threads of torch[^[]*\[default: 0\]", text), text


# ------------------------------------------------------------------------------------------ screens


@pytest.fixture
def three_runs(tmp_path: Path) -> Path:
    """A journal of runs of one config: 1 thread, 2 threads, one that recorded no environment, and 1 thread
    again."""
    from fastpose.config import RunConfig

    home = tmp_path / "home"
    home.mkdir()
    store = store_at(home)
    config = RunConfig(name="SAME").to_dict()
    for key, env in (("ONE", env_of(1)), ("TWO", env_of(2)), ("OLD", None), ("AGAIN", env_of(1))):
        run = store.start_run(name=key, label=LABEL.format(key), config=config, environment=env)
        store.finish(run.id)
    store.close()
    return home


def test_compare_shows_runs_differing_only_in_threads_as_different_with_the_reason(three_runs: Path) -> None:
    out = fastpose(three_runs, "compare", "ONE", "TWO", COLUMNS="160")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "config: identical (name, display options and thread setting aside); what else changes the numbers:" in text
    assert "environment: identical" not in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("threads.")}
    assert rows == {"threads.MKL_NUM_THREADS": ["1", "2"], "threads.OMP_NUM_THREADS": ["1", "2"],
                    "threads.torch_inter_op": ["1", "2"], "threads.torch_intra_op": ["1", "2"]}
    assert "threads: CPU kernels split their sums by thread count: results are not bit-identical across counts" in text

    data = json.loads(fastpose(three_runs, "compare", "ONE", "TWO", "--json").stdout)
    assert data["config_diff"] == {} and data["environment_not_recorded"] == []
    assert data["environment_diff"]["threads.torch_intra_op"]["values"] == [1, 2]
    assert "not bit-identical" in data["environment_diff"]["threads.torch_intra_op"]["why"]
    assert data["runs"][0]["environment"] == env_of(1)

    same = fastpose(three_runs, "compare", "ONE", "AGAIN", COLUMNS="160").stdout
    assert "environment: identical (threads, device, precision, backend flags, versions)" in same


def test_a_run_without_an_environment_is_not_recorded_never_identical(three_runs: Path) -> None:
    text = fastpose(three_runs, "compare", "ONE", "OLD", COLUMNS="160").stdout
    assert "environment: not recorded for #2" in text and "whether they differ is unknown" in text
    assert "environment: identical" not in text
    assert "config: identical (name, display options and thread setting aside); what else changes" in text
    data = json.loads(fastpose(three_runs, "compare", "ONE", "OLD", "--json").stdout)
    assert data["environment_diff"] == {} and data["environment_not_recorded"] == [3]
    assert data["runs"][1]["environment"] is None

    shown = fastpose(three_runs, "journal", "show", "OLD", COLUMNS="160").stdout
    assert "environment (what else changes the numbers)\n  not recorded" in shown
    shown = fastpose(three_runs, "journal", "show", "TWO", COLUMNS="160").stdout
    section = shown[shown.index("environment (what else"):]
    assert re.search(r"threads\s+torch 2 intra-op, 2 inter-op; OMP_NUM_THREADS 2, MKL_NUM_THREADS 2", section)
    assert re.search(r"device\s+cpu: AMD EPYC", section) and re.search(r"precision\s+32-true", section)
    assert re.search(r"versions\s+torch 2.13.0\+cpu, lightning 2.6.6, numpy 2.4.6, cuda -, cudnn -", section)


# ------------------------------------------------------------------------------------------ real runs


@pytest.mark.slow
def test_real_runs_record_their_threads_device_and_precision_and_carry_the_count(tmp_path: Path) -> None:
    """Two runs of one config on 1 and 2 threads are told apart by ``compare``, with the reason; ``--from``
    carries the count, ``resume`` too, and says so in one line when this process has fewer CPUs."""
    home = tmp_path / "home"
    one = fastpose(home, "train", "--name", "T1", "--epochs", "2", "--threads", "1", *TINY)
    assert one.returncode == 0, one.stderr
    first = one.stderr.splitlines()[0]
    assert re.fullmatch(r"run 1 \S+-T1-\S+ on cpu \(.+\), 1 thread \(--threads\), precision 32-true \(.+\)", first), first
    epochs = [line for line in one.stderr.splitlines() if line.startswith("epoch ")]
    assert re.search(r"\([\dhms]+; run ~[\dhms]+ to go\)$", epochs[0]) and re.search(r"\([\dhms]+\)$", epochs[1]), epochs
    two = fastpose(home, "train", "--name", "T2", "--epochs", "2", "--threads", "2", *TINY)
    assert two.returncode == 0, two.stderr

    store = store_at(home)
    r1, r2 = store.resolve("T1"), store.resolve("T2")
    for run, n in ((r1, 1), (r2, 2)):
        env = run.environment
        assert env["recorded"] == "at fit start" and env["precision"] == "32-true"
        assert env["threads"]["torch_intra_op"] == env["threads"]["torch_inter_op"] == n
        assert env["threads"]["OMP_NUM_THREADS"] == env["threads"]["MKL_NUM_THREADS"] == str(n)
        assert env["device"]["accelerator"] == "cpu" and env["device"]["name"] and env["device"]["count"] == 1
        assert env["backends"]["deterministic_algorithms"] == "warn"
        assert env["versions"]["torch"] and env["versions"]["lightning"] and env["versions"]["numpy"]
    store.close()

    text = fastpose(home, "compare", "T1", "T2", COLUMNS="160").stdout
    assert "config: identical (name, display options and thread setting aside); what else changes the numbers:" in text
    assert re.search(r"threads\.torch_intra_op\s+1\s+2", text)
    assert "results are not bit-identical across counts" in text

    again = fastpose(home, "train", "--from", "T2", "--name", "T2_FROM", "--epochs", "1", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "2 threads (--threads)" in again.stderr.splitlines()[0]
    resumed = fastpose(home, "resume", "T2", "--epochs", "3", cpus_one=True)
    assert resumed.returncode == 0, resumed.stderr
    note = ("note: run 2 trained on 2 threads; this process may use 1 CPUs: training on 1 (numbers may differ "
            "from run 2's; --threads 2 uses 2 anyway)")
    assert resumed.stderr.splitlines()[0] == note, resumed.stderr
    assert "1 thread (--threads)" in resumed.stderr.splitlines()[1]
    store = store_at(home)
    try:
        carried, child = store.resolve("T2_FROM"), store.list_runs(name="T2")[0]
        assert carried.environment["threads"]["torch_intra_op"] == 2 and carried.config["train"]["threads"] == 2
        assert any(n.text.endswith("; threads 2, as run 2 used") for n in store.notes(carried.id))
        assert child.parent_id == r2.id and child.environment["threads"]["torch_intra_op"] == 1
    finally:
        store.close()
