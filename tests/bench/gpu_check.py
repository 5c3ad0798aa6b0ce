"""The prepared GPU check (``tests/bench/gpu_check.sh``): one command, everything it measures in one JSON file.

    tests/bench/gpu_check.sh [--out gpu_check.json] [--budget-s 450]   # on a GPU machine: at most 8 minutes
    tests/bench/gpu_check.sh --cpu-smoke --out /tmp/smoke.json          # the same steps at tiny sizes, CPU

Steps, in this order (each is timed; a step that fails is recorded with its error and the others still run;
a step that would start after ``--budget-s`` is recorded as skipped):

==================  =============================================================================================
``demo``            the Quickstart demo (``fastpose train`` with the defaults: 10 epochs of 1,280 synthetic 64x64
                    images) on the GPU, rendering on the device (``--render-device accelerator``): wall time,
                    exit code, status, final and best metrics from the journal
``train_rate``      training images/s of ``fastpose train`` (render on the device + forward + loss + backward +
                    AdamW step + the run's own per-step work) at 64x64, from the demo's steps, and at 640x480,
                    from a one-epoch run of its own (``--image-size 640x480``, batch 16): the batch over the
                    median time from one step's start to the next (TensorBoard's per-step ``lr-AdamW`` points),
                    so start-up, validation and warm-up steps do not count; peak GPU memory of each run
``inference``       ``tests/bench/bench_inference.py`` at 640x480: batch 1 and 8, resnet18 and resnet50, fp32,
                    bf16 and fp16 autocast; forward, post-processing and end to end (FPS)
``ddp``             a short run with ``--strategy ddp`` on one device (2 epochs of 256 images): exit code,
                    status, metrics
``determinism``     the demo rerun with the same config (``fastpose train --from``): every journaled metric
                    point compared with the first run's (equal, or the largest difference)
``inference_compiled``  the inference rows again with ``torch.compile`` (fp32 and bf16), last: compiling costs
                    the most time
==================  =============================================================================================

On the GPU, ``inference`` also counts the host synchronisations of one ``detect`` at batch 1
(``host_syncs_in_detect``): post-processing runs on the device, and each of these is a wait for it.

Peak GPU memory: ``torch.cuda.max_memory_allocated`` of the in-process steps, and the largest
``memory.used`` that ``nvidia-smi`` reported (sampled every 0.5 s) while each ``fastpose train`` ran.

``--cpu-smoke`` runs every step on the CPU at tiny sizes (32 px demo of one epoch, 96x64 for the native size,
one inference configuration, DDP on gloo): the test suite runs it (``tests/test_gpu_check_smoke.py``) so
the script keeps working while no GPU is at hand. Each ``fastpose train`` costs its start-up (importing
torch and Lightning, a journal): the smoke makes four, the fewest that cover the steps. The journal is a
fresh ``$FASTPOSE_HOME`` in a temporary folder unless ``--home`` is given. Exit code 0 when every step that
ran succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

GPU = {  # the full check
    "demo": [],  # the Quickstart demo: every default
    "short": ["--epochs", "2", "--train-size", "256", "--val-size", "64"],
    "rate": {"size": "640x480", "batch": 16, "steps": 24},  # the native size's own run: 24 steps, one epoch
    "inference": {"sizes": [(480, 640)], "batches": [1, 8], "backbones": ["resnet18", "resnet50"],
                  "precisions": ["fp32", "bf16", "fp16"], "compiled_precisions": ["fp32", "bf16"], "repeats": 10},
    "train_timeout_s": 240,
}
SMOKE = {  # the same steps, tiny, on the CPU
    "demo": ["--epochs", "1", "--train-size", "16", "--val-size", "8", "--image-size", "32", "--batch-size", "8"],
    "short": ["--epochs", "1", "--train-size", "16", "--val-size", "8", "--image-size", "32", "--batch-size", "8"],
    "rate": {"size": "96x64", "batch": 2, "steps": 3},
    "inference": {"sizes": [(64, 96)], "batches": [1, 2], "backbones": ["resnet18"], "precisions": ["fp32"],
                  "compiled_precisions": [], "repeats": 1},
    "train_timeout_s": 120,
}


class GpuMemorySampler:
    """The largest ``memory.used`` (MiB) ``nvidia-smi`` reports while the block runs (None without it)."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s, self.peak_mib, self._stop = interval_s, None, threading.Event()
        self.available = shutil.which("nvidia-smi") is not None

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                used = max(float(v) for v in out.split())
                self.peak_mib = used if self.peak_mib is None else max(self.peak_mib, used)
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            self._stop.wait(self.interval_s)

    def __enter__(self) -> GpuMemorySampler:
        if self.available:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.available:
            self._thread.join(timeout=10)


class Check:
    """Runs the steps, keeps the result, writes it after every step (a killed check leaves what it had)."""

    def __init__(self, out: Path, smoke: bool, budget_s: float, home: Path) -> None:
        import torch

        self.out, self.smoke, self.budget_s, self.home = out, smoke, budget_s, home
        self.cfg = SMOKE if smoke else GPU
        self.device = torch.device("cpu" if smoke else "cuda")
        self.accelerator = ["--accelerator", "cpu" if smoke else "gpu", "--devices", "1"]
        self.t0 = time.perf_counter()
        self.failed = False
        sys.path.insert(0, str(HERE))
        from bench_inference import machine

        self.result: dict = {"mode": "cpu-smoke" if smoke else "gpu", "machine": machine(self.device, torch.get_num_threads()),
                             "fastpose_home": str(home), "budget_s": budget_s, "steps": {}}
        self.save()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def save(self) -> None:
        self.result["wall_s"] = round(self.elapsed(), 2)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(json.dumps(self.result, indent=2, default=str, allow_nan=False) + "\n")
        os.replace(tmp, self.out)

    def step(self, name: str, work) -> None:  # noqa: ANN001
        if self.elapsed() > self.budget_s:
            self.result["steps"][name] = {"skipped": f"budget of {self.budget_s:.0f} s spent"}
            print(f"[gpu_check] {name}: skipped (budget)", flush=True)
            self.save()
            return
        print(f"[gpu_check] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            value = work()
            value["step_wall_s"] = round(time.perf_counter() - start, 2)
            ok = value.pop("ok", True)
        except Exception as exc:  # noqa: BLE001 - a failed step is a result; the others still run
            value, ok = {"error": f"{type(exc).__name__}: {exc}", "step_wall_s": round(time.perf_counter() - start, 2)}, False
        self.failed |= not ok
        self.result["steps"][name] = _finite(value)
        print(f"[gpu_check] {name}: {'ok' if ok else 'FAILED'} in {value['step_wall_s']} s", flush=True)
        self.save()

    # ------------------------------------------------------------------ runs through the command line
    def train(self, name: str, extra: list[str]) -> dict:
        """``fastpose train --name NAME ...`` in a subprocess: wall time, exit code, journal status, metrics."""
        timeout = max(30.0, min(self.cfg["train_timeout_s"], self.budget_s + 60 - self.elapsed()))
        cmd = [sys.executable, "-m", "fastpose", "train", "--name", name, "--no-progress", *self.accelerator, *extra]
        if "--render-device" not in extra:
            cmd += ["--render-device", "accelerator"]
        env = dict(os.environ, FASTPOSE_HOME=str(self.home))
        env.pop("FASTPOSE_JOURNAL_URL", None)
        start = time.perf_counter()
        with GpuMemorySampler() as gpu:
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
                code, tail = proc.returncode, (proc.stdout + proc.stderr)[-2000:]
            except subprocess.TimeoutExpired as exc:
                code, tail = None, f"timed out after {timeout:.0f} s: {str(exc.stderr or '')[-1500:]}"
        wall = time.perf_counter() - start
        run = _journal_run(self.home, name)
        return {"command": " ".join(cmd[1:]), "exit_code": code, "wall_s": round(wall, 2),
                "peak_gpu_memory_mib": gpu.peak_mib, "output_tail": tail if code != 0 else tail[-400:], **run,
                "ok": code == 0 and run.get("status") == "completed"}

    def demo(self) -> dict:
        return self.train("GPU_DEMO", self.cfg["demo"])

    def ddp(self) -> dict:
        return self.train("GPU_DDP", [*self.cfg["short"], "--strategy", "ddp"])

    def determinism(self) -> dict:
        first = _journal_run(self.home, "GPU_DEMO")
        if first.get("status") != "completed":
            return {"error": "the demo did not complete; nothing to rerun", "ok": False}
        rerun = self.train("GPU_DEMO_RERUN", ["--from", "GPU_DEMO"])
        a, b = _history(self.home, "GPU_DEMO"), _history(self.home, "GPU_DEMO_RERUN")
        diffs = {k: abs(a[k] - b[k]) for k in a.keys() & b.keys() if not (math.isnan(a[k]) and math.isnan(b[k]))}
        worst = max(diffs.items(), key=lambda kv: kv[1], default=(None, 0.0))
        return {"rerun": rerun, "points_compared": len(diffs), "points_only_in_one": len(a.keys() ^ b.keys()),
                "identical": rerun["ok"] and not (a.keys() ^ b.keys()) and all(d == 0 for d in diffs.values()),
                "largest_difference": worst[1], "largest_difference_at": worst[0], "ok": rerun["ok"]}

    def train_rate(self) -> dict:
        """Training images/s of ``fastpose train`` at the demo's size (its own steps) and at the native size (a
        short run of its own); see the module docstring."""
        r = self.cfg["rate"]
        native = self.train("GPU_RATE", ["--image-size", r["size"], "--batch-size", str(r["batch"]), "--epochs", "1",
                                         "--train-size", str(r["batch"] * r["steps"]), "--val-size", str(r["batch"]),
                                         "--limit-val-batches", "1", "--log-images", "0"])
        rows = {}
        for name, run in (("GPU_DEMO", _journal_run(self.home, "GPU_DEMO")), ("GPU_RATE", native)):
            if run.get("status") != "completed":
                rows[name] = {"error": f"run {name} did not complete"}
                continue
            size, batch = run["config"]["data"]["image_size"], run["config"]["train"]["batch_size"]
            rows[f"{size}x{size}" if isinstance(size, int) else size] = {
                "run": name, "batch": batch, **_step_rate(run["run_dir"], batch),
                "final_loss": run["final_metrics"].get("train/loss"),  # None: not finite (journaled as null)
                "peak_gpu_memory_mib": run.get("peak_gpu_memory_mib")}
        ok = native["ok"] and all("error" not in row and row["final_loss"] is not None and math.isfinite(row["final_loss"])
                                  for row in rows.values())
        return {"sizes": rows, "native_run": {k: v for k, v in native.items() if k != "ok"}, "ok": ok}

    # ------------------------------------------------------------------ measured in this process
    def inference(self, compiled: bool) -> dict:
        import torch

        from bench_inference import run

        c = self.cfg["inference"]
        precisions = c["compiled_precisions"] if compiled else c["precisions"]
        if not precisions:
            return {"skipped": "not in this mode", "rows": []}
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        rows, skipped = [], []
        for backbone in c["backbones"]:  # one call per backbone, so the budget is checked between them
            if self.elapsed() > self.budget_s:
                skipped.append(backbone)
                continue
            rows += run(c["sizes"], c["batches"], [backbone], self.device, precisions, [compiled], c["repeats"])
        peak = torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None
        result = {"rows": rows, "skipped_backbones": skipped, "peak_gpu_memory_mib": peak}
        if self.device.type == "cuda" and not compiled:
            result["host_syncs_in_detect"] = _detect_syncs(self.device, c["sizes"][0])
        return result


def _detect_syncs(device, hw: tuple[int, int]) -> int:  # noqa: ANN001
    """How many times one ``detect`` (batch 1, an untrained resnet18's outputs at ``hw``) waits for the GPU:
    ``torch.cuda.set_sync_debug_mode("warn")`` warns once per synchronising call (``nonzero``, ``.item()``,
    a tensor read as a bool, a copy to the host)."""
    import warnings

    import torch

    from fastpose.pose.data.synthetic import SyntheticPoseDataset
    from fastpose.pose.evaluation import detect
    from fastpose.pose.model import FastPoseNet

    batch = SyntheticPoseDataset(1, image_size=hw, seed=5, rotations="tabletop").render_batch([0], device)
    torch.manual_seed(0)
    with torch.inference_mode():
        out = FastPoseNet("resnet18").eval().to(device)(batch["image"])
        torch.cuda.synchronize(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                detect(out, batch["intrinsics"])
            finally:
                torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def _journal_run(home: Path, name: str) -> dict:
    """The newest run of ``name`` in the journal at ``home``: label, status, final and best metrics."""
    os.environ["FASTPOSE_HOME"] = str(home)
    os.environ.pop("FASTPOSE_JOURNAL_URL", None)
    from fastpose.journal.store import JournalStore

    try:
        with JournalStore.open() as store:
            run = store.resolve(name)
            summaries = store.summaries(run.id)
            return {"run": run.label, "status": run.status, "epoch": run.epoch, "run_dir": run.run_dir,
                    "config": run.config,
                    "final_metrics": {k: v[0] for k, v in sorted(summaries.items())},
                    "best_metrics": {k: v[1] for k, v in sorted(summaries.items())}}
    except Exception as exc:  # noqa: BLE001 - no journal, no run: said in the result
        return {"journal_error": f"{type(exc).__name__}: {exc}"}


def _step_rate(run_dir: str, batch: int) -> dict:
    """Images/s of a run's training steps: ``batch`` over the median time between the starts of consecutive
    steps, read from the ``lr-AdamW`` points its TensorBoard events hold (logged at every step's start), so
    the run's start-up, its validation and a slow first step do not count."""
    import statistics

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir) / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    points = sorted((e.step, e.wall_time) for e in acc.Scalars("lr-AdamW"))
    gaps = [t1 - t0 for (s0, t0), (s1, t1) in zip(points, points[1:]) if s1 == s0 + 1]
    if not gaps:
        raise RuntimeError(f"fewer than two consecutive training steps in {run_dir}/tensorboard")
    median = statistics.median(gaps)
    return {"images_per_s": batch / median, "median_step_s": median, "steps_timed": len(gaps)}


def _history(home: Path, name: str) -> dict[tuple, float]:
    """Every journaled metric point of the newest run of ``name``: (metric, epoch, step) -> value."""
    from fastpose.journal.store import JournalStore

    with JournalStore.open() as store:
        run = store.resolve(name)
        return {(p.name, p.epoch, p.step): float(p.value) for p in store.metric_history(run.id)}


def _finite(value):  # noqa: ANN001, ANN202 - JSON has no NaN: non-finite numbers become null
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="every step on the CPU at tiny sizes")
    parser.add_argument("--out", default="gpu_check.json", help="the JSON file to write")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no step after this many seconds (default 450 on a GPU, 600 for the smoke)")
    parser.add_argument("--home", default=None, help="FASTPOSE_HOME for the runs (default: a new temporary folder)")
    args = parser.parse_args(argv)
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print("error: no CUDA device visible to torch; run with --cpu-smoke for the CPU rehearsal", file=sys.stderr)
        return 2
    if args.cpu_smoke:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="fastpose-gpu-check-"))
    budget = args.budget_s if args.budget_s is not None else (600.0 if args.cpu_smoke else 450.0)
    check = Check(Path(args.out), args.cpu_smoke, budget, home)
    check.step("demo", check.demo)
    check.step("train_rate", check.train_rate)
    check.step("inference", lambda: check.inference(compiled=False))
    check.step("ddp", check.ddp)
    check.step("determinism", check.determinism)
    check.step("inference_compiled", lambda: check.inference(compiled=True))
    if check.device.type == "cuda":
        check.result["peak_gpu_memory_mib"] = max(
            [v for s in check.result["steps"].values() for v in _peaks(s)], default=None)
    check.save()
    print(f"[gpu_check] wrote {args.out} ({check.elapsed():.0f} s){'; some steps FAILED' if check.failed else ''}")
    return 1 if check.failed else 0


def _peaks(value) -> list[float]:  # noqa: ANN001
    """Every ``peak_gpu_memory_mib`` number inside a step's result."""
    if isinstance(value, dict):
        return [v for k, x in value.items() for v in ([x] if k == "peak_gpu_memory_mib" and x is not None else _peaks(x))]
    if isinstance(value, list):
        return [v for x in value for v in _peaks(x)]
    return []


if __name__ == "__main__":
    sys.exit(main())
