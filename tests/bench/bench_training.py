"""Throughput of a journaled `fastpose train` run against a plain PyTorch loop doing the same work.

Same model (FastPoseNet, same seed), same synthetic data, batch size, optimizer and schedule, same
validation work per epoch (loss, detection and the PoseEvaluation metric, as PoseModule does). The timed
span is the training itself (first to last batch including the per-epoch validation), not interpreter
start-up or imports.
The fastpose side is the real run: Lightning, journal (SQLite), heartbeat, TensorBoard, checkpoints and the
pose image panel. Both sides run in this process, interleaved repeat by repeat, so drift in the machine's
load hits both alike; each figure is the median over the repeats, in wall-clock time and in CPU time of the
process (all threads: on a machine shared with other jobs the CPU time is the steadier of the two).

Two cases by default, 2 epochs and 2 repeats each: the tiny one (128 training images, 32 validation) and
the demo's epoch size (1,280 and 128). Targets: overhead at most 25 % and at most 10 %.

    python tests/bench/bench_training.py                          # both cases
    python tests/bench/bench_training.py --cases 1280 --profile   # + where the time of one run goes
    python tests/bench/bench_training.py --cases 128 --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fastpose.config import RunConfig  # noqa: E402

VAL_SIZE = {128: 32, 1280: 128}  # the validation set of each standard case
TARGET = {128: 25.0, 1280: 10.0}  # overhead targets, in %


class Clock:
    """Wall-clock and process CPU seconds since ``start()``."""

    def start(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def plain_loop(config: RunConfig) -> tuple[float, float]:
    """(wall, CPU) seconds for the training epochs (with validation) in plain PyTorch."""
    from torch.utils.data import DataLoader

    from fastpose.pose.evaluation import PoseEvaluation, detect
    from fastpose.training.datamodule import build_datasets
    from fastpose.training.module import build_loss_fn, build_model, cosine_with_warmup

    t = config.train
    torch.manual_seed(t.seed)
    model = build_model(config)
    for name, p in model.named_parameters():  # older fastpose kept the unused classifier, frozen in training
        if name.startswith("encoder.fc."):
            p.requires_grad_(False)
    loss_fn = build_loss_fn(config)
    train_set, val_set = build_datasets(config)
    train = DataLoader(train_set, batch_size=t.batch_size, shuffle=True, drop_last=True,
                       generator=torch.Generator().manual_seed(t.seed))
    val = DataLoader(val_set, batch_size=t.batch_size)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=t.lr, weight_decay=t.weight_decay)
    total = t.epochs * len(train)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(total, min(100, max(1, total // 20))))
    evaluation = PoseEvaluation(use_3d=getattr(model, "predicts_translation", False))  # as PoseModule
    clock = Clock()
    clock.start()
    for _ in range(t.epochs):
        model.train()
        for batch in train:
            terms = loss_fn(model(batch["image"]), batch)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
            sched.step()
            float(terms["loss"].detach())  # the finiteness check both sides do
        model.eval()
        with torch.no_grad():
            for batch in val:
                out = model(batch["image"])
                loss_fn(out, batch)
                evaluation.update(detect(out, batch["intrinsics"]), batch)
        evaluation.compute()
        evaluation.reset()
    return clock.stop()


def fastpose_run(config: RunConfig, home: Path, profiler=None) -> tuple[float, float]:  # noqa: ANN001
    """(wall, CPU) seconds for the same epochs inside a real journaled run (`fastpose train` minus process
    start and set-up: on_train_start to on_train_end)."""
    import pytorch_lightning as pl

    from fastpose.training import runner

    clock, span = Clock(), {}

    class Timer(pl.Callback):
        def on_train_start(self, trainer, pl_module):  # noqa: ANN001
            clock.start()

        def on_train_end(self, trainer, pl_module):  # noqa: ANN001
            span["seconds"] = clock.stop()

    build, trainer_class = runner.build_trainer, pl.Trainer
    runner.build_trainer = lambda config, run_dir, extra: build(config, run_dir, [*extra, Timer()])
    if profiler is not None:
        class ProfiledTrainer(trainer_class):
            def __init__(self, *args, **kwargs):  # noqa: ANN002, ANN003
                super().__init__(*args, **{**kwargs, "profiler": profiler})

        runner.pl.Trainer = ProfiledTrainer
    os.environ["FASTPOSE_HOME"] = str(home)
    os.environ.pop("FASTPOSE_JOURNAL_URL", None)
    try:
        outcome = runner.train(config)
    finally:
        runner.build_trainer, runner.pl.Trainer = build, trainer_class
    assert outcome.status == "completed", outcome
    return span["seconds"]


def make_config(train_size: int, val_size: int, args: argparse.Namespace) -> RunConfig:
    return RunConfig().override({
        "name": "BENCH", "data.train_size": train_size, "data.val_size": val_size,
        "data.image_size": args.image_size, "train.epochs": args.epochs, "train.batch_size": args.batch_size,
        "train.progress_bar": False, "train.threads": torch.get_num_threads(),  # both sides on the same count
        "train.accelerator": "cpu",
    }).validate()


def bench_case(train_size: int, val_size: int, args: argparse.Namespace, tmp: Path) -> dict:
    config = make_config(train_size, val_size, args)
    images = args.epochs * (train_size // args.batch_size) * args.batch_size
    plain, ours = [], []
    for i in range(args.repeats):  # interleaved, so drift in machine load hits both sides alike
        plain.append(plain_loop(config))
        ours.append(fastpose_run(config, tmp / f"home-{train_size}-{i}"))
        print(f"  {train_size} images, repeat {i + 1}: plain {plain[-1][0]:.2f} s wall / {plain[-1][1]:.2f} s CPU, "
              f"fastpose train {ours[-1][0]:.2f} s / {ours[-1][1]:.2f} s", flush=True)
    out = {"train_size": train_size, "val_size": val_size, "images": images}
    for k, clock in enumerate(("wall", "cpu")):
        p = statistics.median(r[k] for r in plain)
        f = statistics.median(r[k] for r in ours)
        out[clock] = (images / p, images / f, 100 * (f / p - 1))
    return out


# ---------------------------------------------------------------------------------------------- breakdown
def make_profiler():  # noqa: ANN201
    from pytorch_lightning.profilers import Profiler

    class Breakdown(Profiler):
        """Lightning's profiler hooks, recording wall and CPU seconds and calls per action."""

        def __init__(self) -> None:
            super().__init__()
            self.wall: dict[str, float] = defaultdict(float)
            self.cpu: dict[str, float] = defaultdict(float)
            self.calls: dict[str, int] = defaultdict(int)
            self._open: dict[str, tuple[float, float]] = {}

        def start(self, action_name: str) -> None:
            self._open[action_name] = (time.perf_counter(), time.process_time())

        def stop(self, action_name: str) -> None:
            wall, cpu = self._open.pop(action_name, (None, None))
            if wall is not None:
                self.wall[action_name] += time.perf_counter() - wall
                self.cpu[action_name] += time.process_time() - cpu
                self.calls[action_name] += 1

        def summary(self) -> str:
            return ""

    return Breakdown()


# (label, what Lightning's profiler calls it): the first matching group takes an action; nested actions
# (save_checkpoint inside a checkpoint callback's hook) are counted once, by the outer one.
GROUPS = (
    ("training steps (forward, loss, backward, AdamW; Lightning's step)", ("run_training_batch",)),
    ("training data (rendering in this process)", ("[_TrainingEpochLoop].train_dataloader_next",)),
    ("validation steps (forward, loss, evaluation, metrics)",
     ("[Strategy]SingleDeviceStrategy.validation_step", "[LightningModule]PoseModule.on_validation_epoch_end")),
    ("validation data (rendering)", ("[_EvaluationLoop].val_next",)),
    ("checkpoints (last, best, links)",
     ("[Callback]SharedCheckpoint", "[Callback]LastCheckpoint", "[Callback]ModelCheckpoint",
      "[Callback]InterruptCheckpoint")),
    ("journal (metrics, heartbeat)", ("[Callback]JournalCallback",)),
    ("TensorBoard pose panel (drawing, image)", ("[Callback]PoseImages",)),
    ("TensorBoard per-step losses and HParams", ("[Callback]StepLosses", "[Callback]HParamsSummary")),
    ("console (epoch line, model summary, progress bar)", ("[Callback]ConsoleReport", "[Callback]ProgressBar")),
)


def breakdown(args: argparse.Namespace, train_size: int, val_size: int, tmp: Path) -> None:
    config = make_config(train_size, val_size, args)
    profiler = make_profiler()
    wall, cpu = fastpose_run(config, tmp / f"profile-{train_size}", profiler=profiler)
    steps = args.epochs * (train_size // args.batch_size)
    print(f"\nwhere the time of one `fastpose train` run goes: {args.epochs} epochs x {train_size} images "
          f"(validation {val_size}), batch {args.batch_size}, {steps} steps; per epoch, wall / CPU seconds:")
    rows, used = [], set()
    for label, prefixes in GROUPS:
        names = [n for n in profiler.wall if n.startswith(prefixes) and n not in used]
        used.update(names)
        w, c = sum(profiler.wall[n] for n in names), sum(profiler.cpu[n] for n in names)
        main = max(names, key=profiler.wall.get, default=None)  # the group's costliest action: its calls
        calls = profiler.calls[main] if main else 0
        rows.append((label, w, c, calls))
    rest_w, rest_c = wall - sum(r[1] for r in rows), cpu - sum(r[2] for r in rows)
    rows.append(("everything else (Lightning's loops and logging, TensorBoard scalars)", rest_w, rest_c, 0))
    for label, w, c, calls in rows:
        each = f"  ({1000 * w / calls:.1f} ms wall per call, {calls} calls)" if calls else ""
        print(f"  {label:70s} {w / args.epochs:7.2f} / {c / args.epochs:7.2f}  {100 * w / wall:5.1f} %{each}")
    print(f"  {'total (on_train_start to on_train_end)':70s} {wall / args.epochs:7.2f} / {cpu / args.epochs:7.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="128,1280",
                        help="training set sizes, comma-separated (validation: 32 for 128, 128 for 1280, else "
                             "--val-size)")
    parser.add_argument("--train-size", type=int, help="one case of this size (instead of --cases)")
    parser.add_argument("--val-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--profile", action="store_true", help="also break one run of each case down")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [args.train_size] if args.train_size else [int(s) for s in args.cases.split(",") if s.strip()]
    cases = [(n, VAL_SIZE.get(n, args.val_size) if not args.train_size else args.val_size) for n in sizes]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        plain_loop(make_config(2 * args.batch_size, args.batch_size, args).override({"train.epochs": 1}))  # warm-up
        for train_size, val_size in cases:
            results.append(bench_case(train_size, val_size, args, Path(tmp)))
        if args.profile:
            for train_size, val_size in cases:
                breakdown(args, train_size, val_size, Path(tmp))
    print(f"\ntraining throughput, {args.epochs} epochs, {args.image_size}x{args.image_size} images, batch "
          f"{args.batch_size}, resnet18, {torch.get_num_threads()} threads, median of {args.repeats} interleaved "
          f"repeats; images/s (plain PyTorch loop -> fastpose train) and fastpose's overhead:")
    for r in results:
        target = TARGET.get(r["train_size"])
        wp, wf, wo = r["wall"]
        cp, cf, co = r["cpu"]
        print(f"  {r['train_size']:5d} images/epoch (val {r['val_size']}): wall {wp:7.1f} -> {wf:7.1f}  "
              f"overhead {wo:+6.1f} %   |  CPU {cp:7.1f} -> {cf:7.1f}  overhead {co:+6.1f} %"
              + (f"   (target <= {target:.0f} %)" if target else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
