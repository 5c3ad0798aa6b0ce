"""What changes a run's numbers besides its config and code: set the threads first, then record the rest.

``set_threads(config)`` runs first thing in a run (torch's inter-op pool can be sized only before any
parallel work); ``environment(trainer, threads)`` is the run's journaled environment (``runs.environment``):

| key                | what                                                                               |
| ------------------ | ---------------------------------------------------------------------------------- |
| `threads`          | `torch_intra_op`, `torch_inter_op` (torch's own counts), `OMP_NUM_THREADS`, `MKL_NUM_THREADS` (as set for the run's DataLoader workers and subprocesses), `cpus` (the CPUs this process may use), `chosen` (why that count: `--threads`, `OMP_NUM_THREADS`, `auto: ...`) |
| `device`           | `accelerator` (Lightning's, resolved: cpu, cuda, mps), `name` (the CPU model or the GPU's name), `count` |
| `precision`        | the precision Lightning trains in (``trainer.precision``), e.g. `32-true`, `bf16-mixed` |
| `backends`         | `cudnn_benchmark`, `cudnn_deterministic`, `allow_tf32_matmul`, `allow_tf32_cudnn`, `float32_matmul_precision`, `deterministic_algorithms` (false, true, or "warn"), `fill_uninitialized_memory` |
| `versions`         | `torch`, `lightning`, `numpy`, `cuda` and `cudnn` (None on a CPU build), `python` |
| `recorded`         | `at start` (the planned device and precision, from the trainer built to check the settings) or `at fit start` (the training trainer's, after Lightning set its flags) |

The run's first line names the device, precision and threads (``describe``). ``compare`` diffs everything but
``threads.cpus``, ``threads.chosen`` and ``recorded`` (``fastpose.screens.comparison.ENV_NOT_COMPARED``).
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl

from fastpose.config import RunConfig


@dataclass(frozen=True)
class Threads:
    count: int  # what torch was told
    chosen: str  # why: "--threads", "OMP_NUM_THREADS", "auto: 1 of 2 CPUs free at load 1.2"


def set_threads(config: RunConfig) -> Threads:
    """Set torch's intra- and inter-op threads and ``OMP/MKL_NUM_THREADS`` (inherited by DataLoader workers
    and subprocesses) from ``train.threads`` (``fastpose.environment.choose_threads``). The inter-op pool
    keeps its size when parallel work has already run in this process (a second run in one process): the
    environment records torch's actual counts either way."""
    import torch

    from fastpose.environment import choose_threads

    count, chosen = choose_threads(config.train.threads)
    torch.set_num_threads(count)
    if torch.get_num_interop_threads() != count:
        try:
            torch.set_num_interop_threads(count)
        except RuntimeError:  # parallel work has started in this process: the pool keeps its size
            pass
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(count)
    return Threads(count, chosen)


def no_fill_of_new_memory() -> None:
    """Under Lightning's ``deterministic="warn"`` (``torch.use_deterministic_algorithms(True, warn_only=True)``)
    torch also fills every new tensor's memory with NaN before a kernel writes it
    (``torch.utils.deterministic.fill_uninitialized_memory``): a guard against kernels that read memory they
    never wrote, which no kernel we run does, and 11 % of a training step's CPU time on the demo's model
    (``fill_`` 25 -> 82 ms a step, ``tests/bench/bench_training.py``). Off: the same numbers, bit for bit (the
    determinism tests rerun runs and compare every journaled value). Called after each Trainer is built."""
    import torch

    torch.utils.deterministic.fill_uninitialized_memory = False


def environment(trainer: Any, threads: Threads, recorded: str) -> dict[str, Any]:
    """The run's environment (module table) as JSON-ready values, read from ``trainer`` (resolved device and
    precision) and torch's global state now."""
    import numpy
    import torch

    from fastpose.environment import available_cpus

    cudnn = torch.backends.cudnn
    deterministic: bool | str = torch.are_deterministic_algorithms_enabled()
    if deterministic and torch.is_deterministic_algorithms_warn_only_enabled():
        deterministic = "warn"
    accelerator, name, count = device(trainer)
    return {
        "threads": {"torch_intra_op": torch.get_num_threads(), "torch_inter_op": torch.get_num_interop_threads(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
                    "cpus": available_cpus(), "chosen": threads.chosen},
        "device": {"accelerator": accelerator, "name": name, "count": count},
        "precision": str(getattr(trainer, "precision", None)),
        "backends": {
            "cudnn_benchmark": bool(cudnn.benchmark),
            "cudnn_deterministic": bool(cudnn.deterministic),
            "allow_tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "allow_tf32_cudnn": bool(cudnn.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "deterministic_algorithms": deterministic,
            "fill_uninitialized_memory": bool(torch.utils.deterministic.fill_uninitialized_memory),
        },
        "versions": {
            "torch": torch.__version__, "lightning": pl.__version__, "numpy": numpy.__version__,
            "cuda": torch.version.cuda, "cudnn": cudnn.version() if cudnn.is_available() else None,
            "python": platform.python_version(),
        },
        "recorded": recorded,
    }


def device(trainer: Any) -> tuple[str, str, int]:
    """``(accelerator, name, count)`` of the device ``trainer`` trains on: ``cuda`` and the GPU's name, ``mps``,
    or ``cpu`` and the CPU model."""
    root = getattr(getattr(trainer, "strategy", None), "root_device", None)
    kind = getattr(root, "type", None) or "cpu"
    count = int(getattr(trainer, "num_devices", 1) or 1)
    if kind == "cuda":
        import torch

        return kind, torch.cuda.get_device_name(root), count
    if kind == "mps":
        return kind, f"Apple MPS ({platform.machine()})", count
    return kind, cpu_name(), count


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``'s model name on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip() or platform.machine()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe(env: dict[str, Any]) -> str:
    """The run's first line's part: ``on cpu (AMD EPYC), 1 thread (auto: 1 of 2 CPUs free at load 1.2), precision 32-true``."""
    dev, threads = env["device"], env["threads"]
    n = threads["torch_intra_op"]
    where = f"{dev['count']} x {dev['name']}" if dev["count"] > 1 else dev["name"]
    return (f"on {dev['accelerator']} ({where}), {n} thread{'s' if n != 1 else ''} ({threads['chosen']}), "
            f"precision {env['precision']}")


class RecordEnvironment(pl.Callback):
    """At fit start (rank zero), replace the run's planned environment with the training trainer's: the
    device its strategy put the model on, its precision, the backend flags Lightning set. Written through the
    run's journal writer (spooled while the journal is away); a failure warns and training goes on."""

    def __init__(self, journal: Any, threads: Threads) -> None:
        self.journal, self.threads = journal, threads

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        try:
            self.journal.store.set_environment(self.journal.run_id, environment(trainer, self.threads, "at fit start"))
        except Exception as exc:  # noqa: BLE001 - the journal must never kill a training run
            print(f"warning: journal environment failed ({type(exc).__name__}: {exc}); training goes on",
                  file=sys.stderr)
