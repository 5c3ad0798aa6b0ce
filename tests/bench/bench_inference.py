"""Inference end to end (image tensor -> poses) beside the network forward alone; the evaluation's update cost.

    python tests/bench/bench_inference.py [--threads 2] [--repeats 5] [--checkpoint PATH]

Targets (issue 12): at batch 32, post-processing (instances, aggregation, voting, pose recovery) at most 20 %
of the end-to-end time; ``PoseEvaluation.update`` (matching + AP bookkeeping, given the detections) at most
10 % of the validation forward pass. Timings alternate between the variants in every repeat (side by side,
so a shared machine's load hits both alike); the figures are medians. Without ``--checkpoint`` the network
is freshly initialised, which gives *more* detections (fragments) than a trained one: a pessimistic case for
post-processing. Pass a trained checkpoint for realistic counts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import default_collate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from fastpose.pose.data.synthetic import SyntheticPoseDataset
    from fastpose.pose.evaluation import PoseEvaluation, detect
    from fastpose.pose.model import FastPoseNet

    if args.checkpoint:
        from pathlib import Path

        from fastpose.evaluate import load_checkpoint

        model = load_checkpoint(Path(args.checkpoint))[0]
    else:
        torch.manual_seed(0)
        model = FastPoseNet().eval()
    print(f"threads {args.threads}, repeats {args.repeats} (medians), "
          f"{'checkpoint ' + args.checkpoint if args.checkpoint else 'untrained network'}")
    print(f"{'size':>5} {'batch':>5} {'forward ms':>11} {'end-to-end ms':>14} {'post %':>7} {'eval update ms':>15} {'eval/fwd %':>11} {'dets':>5}")
    for size in (64, 256):
        data = SyntheticPoseDataset(32, image_size=size, seed=5, rotations="tabletop")
        full = default_collate(data.render(range(32)))
        for bs in (1, 32):
            batch = {k: v[:bs] for k, v in full.items()}
            fwd, e2e, upd, dets = [], [], [], 0
            with torch.inference_mode():
                model(batch["image"])  # warm-up
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    out = model(batch["image"])
                    t1 = time.perf_counter()
                    out = model(batch["image"])
                    det = detect(out, batch["intrinsics"])
                    t2 = time.perf_counter()
                    metric = PoseEvaluation()
                    metric.update(det, batch)
                    t3 = time.perf_counter()
                    fwd.append(t1 - t0)
                    e2e.append(t2 - t1)
                    upd.append(t3 - t2)
                    dets = len(det["score"])
            f, e, u = (statistics.median(x) * 1000 for x in (fwd, e2e, upd))
            print(f"{size:>5} {bs:>5} {f:>11.1f} {e:>14.1f} {100 * (e - f) / e:>6.1f}% {u:>15.1f} {100 * u / f:>10.1f}% {dets:>5}")


if __name__ == "__main__":
    main()
