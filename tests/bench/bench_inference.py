"""Inference end to end (image tensor -> poses) beside the network forward alone; the evaluation's update cost.

    python tests/bench/bench_inference.py [--threads 2] [--repeats 5] [--checkpoint PATH]

Targets (issue 12): at batch 32, post-processing (instances, aggregation, voting, pose recovery: ``detect``)
at most 20 % of the end-to-end time; ``PoseEvaluation.update`` (matching + AP bookkeeping, given the
detections) at most 10 % of the validation forward pass.

How it is timed. Every repeat runs, in turn: the forward alone; an end-to-end pass (forward, then
``detect``), timing both of its parts; "before": the same ``detect`` on all ``--threads`` intra-op threads,
as it ran before (it now runs on one, see ``fastpose.pose.indexing.single_threaded``; the faster gathers of
``recover_translation`` are in both); ``PoseEvaluation.update`` as it runs now and on all threads. The shares are medians over repeats of
ratios taken within one repeat (post-processing over the end-to-end pass it belongs to: the forward's own
variance, large on a shared machine, does not enter them; the "before" share puts the old post-processing
beside the same pass's forward). Wall time (``perf_counter``). Without ``--checkpoint`` the network is freshly
initialised, which gives *more* detections (fragments) than a trained one: a pessimistic case for
post-processing. Pass a trained checkpoint for realistic counts.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from unittest import mock

import torch
from torch.utils.data import default_collate


def _detect_all_threads(out, intrinsics):
    """``detect`` as before: the same code on every intra-op thread (``single_threaded`` disabled)."""
    from fastpose.pose.evaluation import detect

    with mock.patch("fastpose.pose.indexing.single_threaded", lambda device: nullcontext()):
        return detect(out, intrinsics)


def _update_all_threads(metric, det, batch):
    with mock.patch("fastpose.pose.indexing.single_threaded", lambda device: nullcontext()):
        metric.update(det, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--sizes", default="64,256")
    parser.add_argument("--batches", default="1,32")
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
    print(f"threads {args.threads}, repeats {args.repeats} (medians; shares: medians of per-repeat ratios), "
          f"{'checkpoint ' + args.checkpoint if args.checkpoint else 'untrained network'}")
    head = ("size", "batch", "fwd ms", "e2e ms", "post ms", "post %", "post-before ms", "post-before %",
            "update ms", "upd/fwd %", "upd-before ms", "upd-before/fwd %", "dets")
    print(" ".join(f"{h:>{max(len(h), 6)}}" for h in head))
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    for size in sizes:
        data = SyntheticPoseDataset(max(batches), image_size=size, seed=5, rotations="tabletop")
        full = default_collate(data.render(range(max(batches))))
        for bs in batches:
            batch = {k: v[:bs] for k, v in full.items()}
            rows = {k: [] for k in ("fwd", "e2e", "post", "share", "old", "old_share", "upd", "upd_r", "old_upd",
                                    "old_upd_r")}
            dets = 0
            with torch.inference_mode():
                model(batch["image"])  # warm-up
                detect(model(batch["image"]), batch["intrinsics"])
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    out = model(batch["image"])
                    t1 = time.perf_counter()
                    del out
                    t2 = time.perf_counter()
                    out = model(batch["image"])
                    t3 = time.perf_counter()
                    det = detect(out, batch["intrinsics"])
                    t4 = time.perf_counter()
                    _detect_all_threads(out, batch["intrinsics"])
                    t5 = time.perf_counter()
                    PoseEvaluation().update(det, batch)
                    t6 = time.perf_counter()
                    _update_all_threads(PoseEvaluation(), det, batch)
                    t7 = time.perf_counter()
                    fwd, e2e, post, old = t1 - t0, t4 - t2, t4 - t3, t5 - t4
                    upd, old_upd = t6 - t5, t7 - t6
                    for key, value in (("fwd", fwd), ("e2e", e2e), ("post", post), ("share", post / e2e),
                                       ("old", old), ("old_share", old / (t3 - t2 + old)), ("upd", upd),
                                       ("upd_r", upd / fwd), ("old_upd", old_upd), ("old_upd_r", old_upd / fwd)):
                        rows[key].append(value)
                    dets = len(det["score"])
                    del out, det
            m = {k: statistics.median(v) for k, v in rows.items()}
            cells = (size, bs, f"{1000 * m['fwd']:.1f}", f"{1000 * m['e2e']:.1f}", f"{1000 * m['post']:.1f}",
                     f"{100 * m['share']:.1f}", f"{1000 * m['old']:.1f}", f"{100 * m['old_share']:.1f}",
                     f"{1000 * m['upd']:.1f}", f"{100 * m['upd_r']:.1f}", f"{1000 * m['old_upd']:.1f}",
                     f"{100 * m['old_upd_r']:.1f}", dets)
            print(" ".join(f"{str(c):>{max(len(h), 6)}}" for c, h in zip(cells, head)), flush=True)


if __name__ == "__main__":
    main()
