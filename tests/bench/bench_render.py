"""Synthetic rendering rate beside the training rate, and where to render (``data.render_device``, workers).

    python tests/bench/bench_render.py [--rounds 5] [--train-repeats 1] [--train-size 1280] [--no-train|--no-render]

1. Rendering, at the demo's image size and batch (64x64, batch 16, tabletop poses, 1-3 objects), on 1 and
   on 2 torch threads, interleaved round by round (each round renders ``--images`` images per variant):
   - ``loader``: ``dataset.render(indices)`` + ``default_collate``, what the DataLoader does per batch;
   - ``scenes``: the loader's part under ``render_device=accelerator`` (scene sampling in numpy, packed);
   - ``ray cast``: the device's part under ``render_device=accelerator`` (``render_scenes``), here on the CPU.
   Images per second of wall time and of process CPU time (the steadier on a shared machine).
2. Training, ``fastpose train`` at the demo's size (1,280 training images of 64x64, 128 validation, batch
   16; torch's default threads; ``--train-size`` images an epoch) for ``--epochs`` epoch(s), in four set-ups
   run interleaved: rendering in
   the training process (``loader``, 0 workers: the default), in one DataLoader worker (``loader``, 1
   worker), on the training device after the transfer (``accelerator``, 0 workers: here the CPU too), and
   the scenes sampled in a worker and ray-cast on the device (``accelerator``, 1 worker). Images per
   second over the run's training span (on_train_start to on_train_end: the epochs with their validation).
   The four give the same batches at this size (bit for bit; ``tests/test_training.py`` checks the last
   against the first at 32 px), so only time differs.

No GPU figures: this machine has none. On a GPU, ``render_device=auto`` ray-casts there; that rate is not
measured here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

SETUPS = (("loader", 0), ("loader", 1), ("accelerator", 0), ("accelerator", 1))


def render_rates(args: argparse.Namespace) -> None:
    from fastpose.pose.data.synthetic import SyntheticPoseDataset

    ds = SyntheticPoseDataset(args.images * args.rounds * 2, image_size=64, rotations="tabletop", seed=0)
    bs = args.batch_size
    variants = {
        "loader (render + collate)": lambda idx: default_collate(ds.render(idx)),
        "scenes (sampling, in the loader)": lambda idx: ds.scenes(idx),
        "ray cast (render_scenes, on the device)": None,  # timed on pre-sampled scenes
    }
    results = {(name, threads): [] for name in variants for threads in (1, 2)}
    start = 0
    for r in range(args.rounds):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            batches = [list(range(start + i, start + i + bs)) for i in range(0, args.images, bs)]
            start += args.images
            for name, fn in variants.items():
                if fn is None:
                    scenes = [ds.scenes(b) for b in batches]
                    t0, c0 = time.perf_counter(), time.process_time()
                    for sc in scenes:
                        ds.render_scenes(sc)
                else:
                    t0, c0 = time.perf_counter(), time.process_time()
                    for b in batches:
                        fn(b)
                results[(name, threads)].append((args.images / (time.perf_counter() - t0),
                                                 args.images / (time.process_time() - c0)))
    print(f"rendering, 64x64, batch {bs}, tabletop, 1-3 objects: images/s, median of {args.rounds} interleaved "
          f"rounds of {args.images} images (wall / CPU time)")
    for name in variants:
        cells = []
        for threads in (1, 2):
            rows = results[(name, threads)]
            cells.append(f"{threads} thread{'s' if threads > 1 else ''}: {statistics.median(w for w, _ in rows):7.0f} / "
                         f"{statistics.median(c for _, c in rows):7.0f}")
        print(f"  {name:42s} " + "   ".join(cells), flush=True)
    torch.set_num_threads(args.threads)


def train_rates(args: argparse.Namespace) -> None:
    from bench_training import fastpose_run

    from fastpose.config import RunConfig

    results = {s: [] for s in SETUPS}
    images = args.epochs * args.train_size
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.train_repeats):
            for mode, workers in SETUPS:
                config = RunConfig().override({
                    "name": "BENCH", "train.epochs": args.epochs, "train.progress_bar": False,
                    "data.train_size": args.train_size,
                    "data.render_device": mode, "data.num_workers": workers}).validate()
                wall, cpu = fastpose_run(config, Path(tmp) / f"{mode}-{workers}-{r}")
                results[(mode, workers)].append((images / wall, images / cpu))
                print(f"  repeat {r + 1}: render_device={mode}, {workers} worker(s): {images / wall:6.1f} images/s wall "
                      f"({wall:.1f} s), {images / cpu:6.1f} per CPU second of the training process", flush=True)
    print(f"training, `fastpose train` ({args.train_size} x 64x64 images an epoch (the demo: 1,280), 128 validation, batch 16, "
          f"{args.epochs} epoch(s), {torch.get_num_threads()} torch threads): images/s, median of "
          f"{args.train_repeats} interleaved repeat(s) (wall; CPU of the training process, workers not counted)")
    for (mode, workers), rows in results.items():
        print(f"  render_device={mode:11s} num_workers={workers}:  {statistics.median(w for w, _ in rows):6.1f} wall   "
              f"{statistics.median(c for _, c in rows):6.1f} CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=256, help="images per round and variant")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=1280, help="training images an epoch (the demo's: 1280)")
    parser.add_argument("--train-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads for training")
    parser.add_argument("--no-train", action="store_true", help="rendering rates only")
    parser.add_argument("--no-render", action="store_true", help="training rates only")
    args = parser.parse_args()
    if not args.no_render:
        render_rates(args)
    if not args.no_train:
        train_rates(args)


if __name__ == "__main__":
    main()
