"""``fastpose eval``: a run's checkpoint evaluated on a split, the NOCS table printed and journaled.

Torch, Lightning and matplotlib are imported inside the functions (``fastpose --help`` stays light).
``evaluate_run`` is the whole command: resolve the run and the checkpoint, rebuild the network from the
configuration stored in the checkpoint, run it over the split, compute ``fastpose.pose.evaluation``'s
metrics, draw the precision-recall curves into ``<run dir>/pr-<split>-<checkpoint>.png``, and record an
evaluation (``fastpose.journal.evaluations``). Bad input (unknown run, missing checkpoint, bad split or
data) raises ``FastposeError`` before anything is written.

Splits: for the synthetic set, ``val`` is the run's own validation set (the images that picked its best
checkpoint) and ``test`` is held out: ``val_size`` images of seed ``data.seed + 2`` (training uses ``seed``,
validation ``seed + 1``). For NOCS a split is a folder under the data root, named as NOCS names them: ``val``
(CAMERA25's validation set, the "CAMERA25" column of the field's tables) and ``real_test`` (REAL275's test
set); a split whose name starts with ``real`` uses REAL275's camera. Where NOCS's own ground-truth files
exist (``<root>/gts/<split>/results_*.pkl``) the images are scored against them; ``Evaluated.ground_truth``
says for how many.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastpose.errors import FastposeError

SPLITS = ("val", "test", "tune")  # of the synthetic set; NOCS's are the folders under its root
SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")  # a folder name that fits the journal's column
PLOT_CRITERIA = ("iou_50", "10deg_5cm", "10deg")


def find_checkpoint(run: Any, which: str) -> Path:
    """``best`` (the monitor's best of the run), ``last``, or a path to a checkpoint file."""
    if which not in ("best", "last"):
        path = Path(which)
        if not path.is_file():
            raise FastposeError(f"--checkpoint {which!r}: no such file (use best, last or a path)")
        return path
    folder = Path(run.run_dir or "") / "checkpoints"
    if which == "last":
        candidates = [folder / "last.ckpt"] if (folder / "last.ckpt").is_file() else []
    else:
        candidates = sorted(folder.glob("best-*.ckpt")) if folder.is_dir() else []
    if not candidates:
        raise FastposeError(f"run {run.id} ({run.label}) has no {which} checkpoint in {folder}")
    return candidates[-1]


def load_checkpoint(path: Path) -> tuple[Any, Any, bool]:
    """``(model, config, has_translation)`` from a Lightning checkpoint of ``fastpose train``.

    Read with ``fastpose.pose.checkpoint.load_torch_file`` (never runs code from the file). The stored
    config must pass ``RunConfig.validate`` and the weights must fit the network it describes, else one
    line names the file and the problem. Checkpoints written before the translation and size heads existed
    load without them (``has_translation`` False: the 3D metrics are then left out)."""
    from fastpose.config import ConfigError, RunConfig
    from fastpose.pose.checkpoint import load_torch_file, state_mismatch
    from fastpose.training.module import build_model

    shown = repr(str(path))
    ckpt = load_torch_file(path)
    stored = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    weights = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(stored, dict) or not isinstance(weights, dict):
        raise FastposeError(f"checkpoint {shown} is not a fastpose checkpoint (no stored config and state_dict)")
    try:
        config = RunConfig.from_saved(stored).override({"model.weights": None}).validate()
    except ConfigError as exc:
        raise FastposeError(f"checkpoint {shown} holds an unusable config: {exc}") from None
    state = {k[len("model."):]: v for k, v in weights.items() if isinstance(k, str) and k.startswith("model.")}
    model = build_model(config)
    problems = state_mismatch(model, state, may_miss=("geometry_head.",))
    if problems:
        raise FastposeError(f"checkpoint {shown} does not fit the network its config describes: "
                            + "; ".join(problems))
    missing, _ = model.load_state_dict(state, strict=False)
    return model.eval(), config, not missing


def check_split(split: str, dataset: str | None) -> str:
    """``split`` if it can name a split of ``dataset`` (None: the run's, not known yet), else a one-line error:
    one of ``SPLITS`` for the synthetic set, a folder name (no path) for NOCS."""
    if dataset == "synthetic" and split not in SPLITS:
        raise FastposeError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)} (with --dataset nocs: "
                            "a split folder under the data root, such as val or real_test)")
    if not isinstance(split, str) or not SPLIT_NAME.fullmatch(split):
        shown = repr(split) if len(repr(split)) <= 40 else repr(split)[:37] + "..."
        raise FastposeError(f"unknown split {shown}: a split is val, test, tune (synthetic) or the name of a NOCS "
                            "split folder (1-32 characters from A-Z a-z 0-9 _ . -)")
    return split


def nocs_split_folder(root: Path, split: str) -> Path:
    """``<root>/<split>``, else a one-line error listing the split folders ``root`` has."""
    folder = root / split
    if not folder.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in ("gts", "obj_models"))
        listed = ", ".join(have[:12]) + (", ..." if len(have) > 12 else "") if have else "none"
        raise FastposeError(f"no split folder {split!r} in the NOCS root {str(root)!r} (its split folders: "
                            f"{listed}); NOCS names CAMERA25's validation set val and REAL275's test set real_test")
    return folder


def eval_dataset(config: Any, split: str, dataset: str | None, data_root: str | None) -> Any:
    d = config.data
    dataset = dataset or d.dataset
    check_split(split, dataset)
    if dataset == "synthetic":
        from fastpose.pose.data.synthetic import SyntheticPoseDataset

        from fastpose.config import SPLIT_SEED_OFFSET

        seed = d.seed + SPLIT_SEED_OFFSET[split]
        return SyntheticPoseDataset(d.val_size, image_size=d.image_hw, seed=seed, rotations=d.rotations,
                                    max_objects=d.max_objects)
    if dataset == "nocs":
        root = data_root or d.data_root
        if not root or not Path(root).is_dir():
            raise FastposeError(f"--dataset nocs needs --data-root DIR (got {root!r})")
        nocs_split_folder(Path(root), split)
        from fastpose.pose.data.nocs import NOCSDataset

        return NOCSDataset(root, split, image_size=d.image_hw, max_objects=d.max_objects, fit=d.fit)
    raise FastposeError(f"unknown dataset {dataset!r}; choose one of: synthetic, nocs")


def evaluate_model(model: Any, data: Any, batch_size: int = 16, use_3d: bool = True) -> Any:
    """A ``PoseEvaluation`` updated over ``data`` (no gradients)."""
    import torch
    from torch.utils.data import DataLoader

    from fastpose.pose.evaluation import PoseEvaluation, detect

    metric = PoseEvaluation(use_3d=use_3d)
    with torch.inference_mode():
        for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
            out = model(batch["image"])
            metric.update(detect(out, batch["intrinsics"]), batch)
    return metric


def plot_pr(metric: Any, path: Path, title: str) -> None:
    """Precision-recall curves per class, one panel per criterion of ``PLOT_CRITERIA``, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastpose.pose.data.synthetic import CLASSES

    criteria = [c for c in PLOT_CRITERIA if metric.use_3d or not c.startswith("iou") and "cm" not in c]
    fig, axes = plt.subplots(1, len(criteria), figsize=(4.2 * len(criteria), 4), squeeze=False)
    for ax, crit in zip(axes[0], criteria):
        for c, (recall, precision) in metric.pr_curves(crit).items():
            ax.step(recall[1:-1].numpy(), precision[1:-1].numpy(), where="post", label=CLASSES[c - 1])
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall (all ground truth)")
        ax.set_ylabel("precision (all detections)")
        ax.set_title(crit)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass
class Evaluated:
    """What ``evaluate_run`` did: the journaled record, the run, the checkpoint file, the split's size, and for
    NOCS how many of its images NOCS's own ground-truth files cover (``ground_truth``: files, images)."""

    run: Any
    record: Any  # fastpose.journal.evaluations.EvaluationRecord
    checkpoint: Path
    split: str
    num_images: int
    ground_truth: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"run": {"id": self.run.id, "label": self.run.label, "name": self.run.name},
               "evaluation": self.record.to_json()}
        if self.ground_truth is not None:
            out["ground_truth"] = {"nocs_files": self.ground_truth[0], "images": self.ground_truth[1]}
        return out

    def ground_truth_line(self) -> str | None:
        """``ground truth: NOCS files for N of M images`` (and what the others use), or None (synthetic)."""
        if self.ground_truth is None:
            return None
        files, images = self.ground_truth
        rest = "" if files == images else "; the others: _pose.json, or poses derived from depth"
        return f"ground truth: NOCS files for {files} of {images} images{rest}"

    def title(self) -> str:
        return (f"run {self.run.id} {self.run.label} · {self.checkpoint.name} · {self.split} · {self.num_images} "
                "images (AP %, detections ranked by score, false positives counted)")


def evaluate_run(ref: str, checkpoint: str = "best", split: str = "val", dataset: str | None = None,
                 data_root: str | None = None) -> Evaluated:
    """The work of ``fastpose eval`` (see the module docstring): evaluate, draw the PR curves, journal it."""
    if dataset is not None and dataset not in ("synthetic", "nocs"):
        raise FastposeError(f"unknown dataset {dataset!r}; choose one of: synthetic, nocs")
    check_split(split, dataset)
    from fastpose.journal.access import read_run
    from fastpose.journal.db import missing_journal
    from fastpose.journal.evaluations import record_evaluation
    from fastpose.journal.store import JournalStore

    # never creates a journal for a run that cannot be in it
    read_run(ref, FastposeError(f"{missing_journal()}; no runs to evaluate"))
    with JournalStore.open() as store:
        run = store.resolve(ref)
        path = find_checkpoint(run, checkpoint)
        model, config, has_3d = load_checkpoint(path)
        data = eval_dataset(config, split, dataset, data_root)
        if len(data) == 0:
            raise FastposeError(f"the {split} split has no images")
        metric = evaluate_model(model, data, batch_size=config.train.batch_size, use_3d=has_3d)
        values = {k: float(v) for k, v in metric.compute().items()}
        plot = Path(run.run_dir or ".") / f"pr-{split}-{path.stem}.png"
        plot_pr(metric, plot, f"{run.label} · {path.name} · {split} ({len(data)} images)")
        record = record_evaluation(store, run.id, checkpoint=str(path), split=split,
                                   dataset=dataset or config.data.dataset, data_root=data_root or config.data.data_root,
                                   num_images=len(data), metrics=values, plot_path=str(plot))
    counted = data.ground_truth_count() if hasattr(data, "ground_truth_count") else None
    return Evaluated(run, record, path, split, len(data), None if counted is None else (counted, len(data)))
