"""A trained run against the trivial baseline, evaluated by the same code.

    python tests/bench/eval_baseline.py RUN [--checkpoint best] [--split val]

The baseline keeps the model's own detections (mask, class, score) and replaces the pose: the box is centred
on the ray through the instance mask's centroid at the class-mean depth, with the class-mean size (both from
256 training images' ground truth) and the identity rotation. Acceptance: the model's median translation error
is at most half of the baseline's, and its iou_25 AP at least twice the baseline's.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.data import DataLoader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--split", default="val")
    args = parser.parse_args()

    from fastpose.training.evaluate import eval_dataset, find_checkpoint, load_checkpoint
    from fastpose.journal.store import JournalStore
    from fastpose.pose.evaluation import PoseEvaluation, class_means, detect, trivial_baseline
    from fastpose.training.datamodule import build_datasets

    with JournalStore.open() as store:
        run = store.resolve(args.run)
    path = find_checkpoint(run, args.checkpoint)
    model, config, _ = load_checkpoint(path)
    depth, size = class_means(build_datasets(config)[0])
    data = eval_dataset(config, args.split, None, None)
    ours, base = PoseEvaluation(), PoseEvaluation()
    with torch.inference_mode():
        for batch in DataLoader(data, batch_size=config.train.batch_size):
            det = detect(model(batch["image"]), batch["intrinsics"])
            ours.update(det, batch)
            base.update(trivial_baseline(det, batch["intrinsics"], depth, size), batch)
    a = {k: float(v) for k, v in ours.compute().items() if "/" not in k}
    b = {k: float(v) for k, v in base.compute().items() if "/" not in k}
    print(f"{run.label} {path.name} on {args.split} ({len(data)} images); same detections for both")
    print(f"{'metric':<22}{'model':>10}{'baseline':>10}")
    for k in a:
        print(f"{k:<22}{a[k]:>10.4f}{b[k]:>10.4f}")
    checks = {
        "median translation error <= half of the baseline's": a["trans_err_median_cm"] <= b["trans_err_median_cm"] / 2,
        "iou_25 AP >= twice the baseline's": a["iou_25"] >= 2 * b["iou_25"],
    }
    for text, ok in checks.items():
        print(f"[{'met' if ok else 'NOT met'}] {text}")
    print(json.dumps({"model": a, "baseline": b}))


if __name__ == "__main__":
    main()
