"""Throughput of a journaled `fastpose train` run against a plain PyTorch loop doing the same work.

Same model (FastPoseNet, same seed), same synthetic data, batch size, optimizer and schedule, same
validation work per epoch (loss, evaluate_batch, rotation metrics). The timed span is the training itself
(first to last batch including the per-epoch validation), not interpreter start-up or imports.
The fastpose side is the real run: Lightning, journal (SQLite), heartbeat, TensorBoard, checkpoints and the
pose image panel. Target: overhead at most 10 %.

    python tests/bench/bench_training.py                 # 2 epochs x 256 images, twice each, interleaved
    python tests/bench/bench_training.py --train-size 512 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fastpose.config import RunConfig  # noqa: E402


def plain_loop(config: RunConfig) -> float:
    """Seconds for the training epochs (with validation) in plain PyTorch."""
    from torch.utils.data import DataLoader

    from fastpose.pose.aggregate import evaluate_batch
    from fastpose.pose.metrics import DegreeErrorMeanAP, RotationAccuracy
    from fastpose.training.datamodule import build_datasets
    from fastpose.training.module import build_loss_fn, build_model, cosine_with_warmup

    t = config.train
    torch.manual_seed(t.seed)
    model = build_model(config)
    loss_fn = build_loss_fn(config)
    train_set, val_set = build_datasets(config)
    train = DataLoader(train_set, batch_size=t.batch_size, shuffle=True, drop_last=True,
                       generator=torch.Generator().manual_seed(t.seed))
    val = DataLoader(val_set, batch_size=t.batch_size)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=t.lr, weight_decay=t.weight_decay)
    total = t.epochs * len(train)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(total, min(100, max(1, total // 20))))
    rot, ap = RotationAccuracy(), DegreeErrorMeanAP(thresholds=(5, 10, 20))
    start = time.perf_counter()
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
                ev = evaluate_batch(out, batch)
                rot.update(ev)
                ap.update(ev)
        rot.compute(), ap.compute()
        rot.reset(), ap.reset()
    return time.perf_counter() - start


def fastpose_run(config: RunConfig, home: Path) -> float:
    """Seconds for the same epochs inside a real journaled run (`fastpose train` minus process start)."""
    import pytorch_lightning as pl

    from fastpose.training import runner

    span: dict[str, float] = {}

    class Timer(pl.Callback):
        def on_train_start(self, trainer, pl_module):  # noqa: ANN001
            span["start"] = time.perf_counter()

        def on_train_end(self, trainer, pl_module):  # noqa: ANN001
            span["end"] = time.perf_counter()

    build = runner.build_trainer
    runner.build_trainer = lambda config, run_dir, extra: build(config, run_dir, [*extra, Timer()])
    os.environ["FASTPOSE_HOME"] = str(home)
    os.environ.pop("FASTPOSE_JOURNAL_URL", None)
    try:
        outcome = runner.train(config)
    finally:
        runner.build_trainer = build
    assert outcome.status == "completed", outcome
    return span["end"] - span["start"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--val-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    config = RunConfig().override({
        "name": "BENCH", "data.train_size": args.train_size, "data.val_size": args.val_size,
        "data.image_size": args.image_size, "train.epochs": args.epochs, "train.batch_size": args.batch_size,
        "train.progress_bar": False,
    }).validate()
    images = args.epochs * (args.train_size // args.batch_size) * args.batch_size
    plain, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        plain_loop(config.override({"train.epochs": 1, "data.train_size": 2 * args.batch_size}))  # warm-up
        for i in range(args.repeats):  # interleaved, so drift in machine load hits both sides alike
            plain.append(images / plain_loop(config))
            ours.append(images / fastpose_run(config, Path(tmp) / f"home{i}"))
            print(f"repeat {i + 1}: plain {plain[-1]:.1f} img/s, fastpose train {ours[-1]:.1f} img/s", flush=True)
    p, f = statistics.median(plain), statistics.median(ours)
    print(
        f"\ntraining throughput, {args.epochs} epochs x {args.train_size} images {args.image_size}x{args.image_size}, "
        f"batch {args.batch_size}, {config.model.backbone}, {torch.get_num_threads()} threads, "
        f"validation {args.val_size} images per epoch on both sides:\n"
        f"  plain PyTorch loop : {p:8.1f} images/s\n"
        f"  fastpose train     : {f:8.1f} images/s  (Lightning + journal + checkpoints + TensorBoard)\n"
        f"  overhead           : {100 * (p / f - 1):+8.1f} %  (target <= 10 %)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
