"""The TensorBoard pose panel (``val/poses``) as a PNG: ``docs/screens/pose_panel.png``.

    python docs/screens/make_pose_panel.py CHECKPOINT [--out PNG] [--count 4]
    python docs/screens/make_pose_panel.py            # trains the demo first (fastpose train, defaults)

Draws, with the functions a run uses for its TensorBoard panel (``evaluate_batch``,
``fastpose.training.tblog.predicted_rotations``, ``fastpose.training.draw.pose_panel``), the first COUNT
images of the checkpoint's validation set: ground truth left, prediction right with each object's rotation
error, missed objects marked. Without a checkpoint it trains ``fastpose train --name DEMO`` (the README's
quickstart run) into a temporary journal and uses its best checkpoint.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def train_demo(home: Path) -> Path:
    env = {**os.environ, "FASTPOSE_HOME": str(home)}
    env.pop("FASTPOSE_JOURNAL_URL", None)
    subprocess.run([sys.executable, "-m", "fastpose", "train", "--name", "DEMO", "--no-progress"], env=env, check=True)
    return sorted(home.glob("runs/*/*/checkpoints/best-*.ckpt"))[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="a fastpose checkpoint (default: train the demo first)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("pose_panel.png")))
    parser.add_argument("--count", type=int, default=4, help="validation images, one row each")
    args = parser.parse_args()

    import torch

    from fastpose.training.evaluate import load_checkpoint
    from fastpose.pose.aggregate import evaluate_batch
    from fastpose.training.datamodule import PoseDataModule
    from fastpose.training.draw import pose_panel
    from fastpose.training.tblog import predicted_rotations

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(args.checkpoint) if args.checkpoint else train_demo(Path(tmp))
        model, config, _ = load_checkpoint(checkpoint)
    data = PoseDataModule(config.override({"train.batch_size": args.count}))
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    with torch.inference_mode():
        ev = evaluate_batch(model(batch["image"]), batch)
    pred_rot, matched, error = predicted_rotations(batch, ev)
    panel = pose_panel(batch, pred_rot, matched, args.count, error)
    panel.image.save(args.out)
    found = [f"{label.text}" for label in panel.labels if label.column == 1]
    print(f"{args.out}: {args.count} images from {checkpoint.name}; predicted: {', '.join(found)}")


if __name__ == "__main__":
    main()
