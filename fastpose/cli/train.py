"""``fastpose train`` and ``fastpose resume``: options to a RunConfig, then one call into the runner.

Each option maps to one RunConfig key (``_TRAIN_KEYS``); only the options given on the command line override
the ``--config`` file (and the file overrides the defaults in fastpose/config.py). Torch and Lightning are
imported inside the command bodies."""

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fastpose.cli.app import app, opt, require_text_cwd


# Each option maps to one RunConfig key; only the options given on the command line override the
# --config file (and the file overrides the defaults in fastpose/config.py).
_TRAIN_KEYS = {
    "loss": "loss.name",
    "eps": "loss.eps",
    "mask_weight": "loss.mask_weight",
    "rot_weight": "loss.rot_weight",
    "trans_weight": "loss.trans_weight",
    "size_weight": "loss.size_weight",
    "monitor": "train.monitor",
    "backbone": "model.backbone",
    "weights": "model.weights",
    "decoder_channels": "model.decoder_channels",
    "rotation": "model.rotation",
    "dataset": "data.dataset",
    "data_root": "data.data_root",
    "image_size": "data.image_size",
    "fit": "data.fit",
    "train_size": "data.train_size",
    "val_size": "data.val_size",
    "rotations": "data.rotations",
    "max_objects": "data.max_objects",
    "num_workers": "data.num_workers",
    "render_device": "data.render_device",
    "data_seed": "data.seed",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "weight_decay": "train.weight_decay",
    "seed": "train.seed",
    "save_every": "train.save_every",
    "accelerator": "train.accelerator",
    "devices": "train.devices",
    "strategy": "train.strategy",
    "num_nodes": "train.num_nodes",
    "precision": "train.precision",
    "threads": "train.threads",
    "limit_train_batches": "train.limit_train_batches",
    "limit_val_batches": "train.limit_val_batches",
    "log_images": "train.log_images",
    "progress": "train.progress_bar",
}


def _dflt(key: str, help: str, **kw: Any) -> Any:
    """An option of a RunConfig key: its help says the default (fastpose/config.py), which applies when
    neither the option nor the --config file (nor --from) sets it."""
    from fastpose.config import DEFAULTS, _toml_value

    value = DEFAULTS[key]
    shown = "none" if value is None else (value if isinstance(value, str) else _toml_value(value))
    return typer.Option(help=f"{help} [default: {shown}]", show_default=False, **kw)


THREADS_HELP = ("CPU threads of torch (intra- and inter-op): the count changes the numbers and is journaled. "
                "0 = auto: $OMP_NUM_THREADS when set, else the CPUs the load leaves free, at most 4; "
                "--from and resume: the run's own count.")

# Options of `train` that change only what a run displays; `resume` takes them too.
DISPLAY_OPTIONS = ("progress", "log_images")


@app.command()
def train(
    name: Annotated[Optional[str], opt("Run NAME (required unless the --config file sets it).")] = None,
    config: Annotated[Optional[Path], opt("TOML config file (tables data, model, loss, train); options given here override it.")] = None,
    note: Annotated[Optional[str], opt("Why this run: stored as its first journal note.")] = None,
    loss: Annotated[Optional[str], _dflt("loss.name", "Rotation loss: mse | qloss | pw-qloss | geodesic | chordal | qloss-neglog.")] = None,
    rotation: Annotated[Optional[str], _dflt("model.rotation", "Rotation head: quaternion | 6d | 9d (chordal: 6d/9d; geodesic: any; others: quaternion).")] = None,
    eps: Annotated[Optional[float], _dflt("loss.eps", "eps in log(eps + 1 - |<q, q_hat>|).")] = None,
    mask_weight: Annotated[Optional[float], _dflt("loss.mask_weight", "Weight of the mask cross-entropy.")] = None,
    rot_weight: Annotated[Optional[float], _dflt("loss.rot_weight", "Weight of the rotation term.")] = None,
    trans_weight: Annotated[Optional[float], _dflt("loss.trans_weight", "Weight of the translation term.")] = None,
    size_weight: Annotated[Optional[float], _dflt("loss.size_weight", "Weight of the size term.")] = None,
    monitor: Annotated[Optional[str], _dflt("train.monitor", "Primary metric: picks the best checkpoint, leads the journal and compare.")] = None,
    backbone: Annotated[Optional[str], _dflt("model.backbone", "Encoder: resnet18 | resnet34 | resnet50 | resnext50_32x4d.")] = None,
    weights: Annotated[Optional[str], _dflt("model.weights", "torchvision ImageNet state_dict file for the encoder (none: from scratch).")] = None,
    decoder_channels: Annotated[Optional[int], _dflt("model.decoder_channels", "Decoder width.")] = None,
    dataset: Annotated[Optional[str], _dflt("data.dataset", "synthetic (rendered, no files) | nocs (needs --data-root).")] = None,
    data_root: Annotated[Optional[str], _dflt("data.data_root", "NOCS dataset folder.")] = None,
    image_size: Annotated[Optional[str], _dflt("data.image_size", "WIDTHxHEIGHT (multiples of 32) or one number for a square.")] = None,
    fit: Annotated[Optional[str], _dflt("data.fit", "How NOCS images (640x480) reach --image-size: resize | crop | letterbox. The 4:3 sizes 128x96, 256x192, 512x384 and 640x480 keep their aspect with any.")] = None,
    train_size: Annotated[Optional[int], _dflt("data.train_size", "Synthetic training samples per epoch.")] = None,
    val_size: Annotated[Optional[int], _dflt("data.val_size", "Synthetic validation samples.")] = None,
    rotations: Annotated[Optional[str], _dflt("data.rotations", "Synthetic poses: so3 | tabletop.")] = None,
    max_objects: Annotated[Optional[int], _dflt("data.max_objects", "Objects per synthetic image: 1..N.")] = None,
    num_workers: Annotated[Optional[int], _dflt("data.num_workers", "DataLoader worker processes.")] = None,
    render_device: Annotated[Optional[str], _dflt("data.render_device", 
        "Where synthetic batches are rendered: auto (on the training device when it is a GPU, else in the "
        "DataLoader) | loader | accelerator.")] = None,
    data_seed: Annotated[Optional[int], _dflt("data.seed", "Synthetic data seed (independent of --seed).")] = None,
    epochs: Annotated[Optional[int], _dflt("train.epochs", "Training epochs.")] = None,
    batch_size: Annotated[Optional[int], _dflt("train.batch_size", "Batch size (per device).")] = None,
    lr: Annotated[Optional[float], _dflt("train.lr", "AdamW learning rate (warm-up, then cosine to 0).")] = None,
    weight_decay: Annotated[Optional[float], _dflt("train.weight_decay", "AdamW weight decay.")] = None,
    seed: Annotated[Optional[int], _dflt("train.seed", "Seed for weights init, data order and Lightning.")] = None,
    save_every: Annotated[Optional[int], _dflt("train.save_every", "Also keep a checkpoint every N epochs (0 = off).")] = None,
    accelerator: Annotated[Optional[str], _dflt("train.accelerator", "Lightning accelerator: auto (a GPU where there is one, else the CPU) | cpu | gpu | ...")] = None,
    devices: Annotated[Optional[str], _dflt("train.devices", "Lightning devices: a count, a list like 0,1, or auto.")] = None,
    strategy: Annotated[Optional[str], _dflt("train.strategy", "Lightning strategy: auto | ddp | ...")] = None,
    num_nodes: Annotated[Optional[int], _dflt("train.num_nodes", "Nodes for multi-node DDP.")] = None,
    precision: Annotated[Optional[str], _dflt("train.precision", "Lightning precision: 32-true | 16-mixed | bf16-mixed | 64-true.")] = None,
    threads: Annotated[Optional[int], _dflt("train.threads", THREADS_HELP)] = None,
    limit_train_batches: Annotated[Optional[float], _dflt("train.limit_train_batches", "Batches per epoch: a fraction <= 1.0 or a count >= 2.")] = None,
    limit_val_batches: Annotated[Optional[float], _dflt("train.limit_val_batches", "Validation batches: a fraction <= 1.0 or a count >= 2.")] = None,
    log_images: Annotated[Optional[int], _dflt("train.log_images", "Validation samples drawn with pose axes into TensorBoard (0 = off).")] = None,
    progress: Annotated[Optional[bool], _dflt("train.progress_bar", "Show the progress bar.")] = None,
    tag: Annotated[Optional[list[str]], opt("Tag the run (repeatable): journal --tag T lists runs by tag.")] = None,
    from_run: Annotated[Optional[str], typer.Option("--from", metavar="RUN", show_default=False, help="Start from the config of RUN (id, label, prefix or NAME); --config and the options given override it.")] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config as TOML (what --config reads) and exit; nothing is trained or written.")] = False,
    sweep_cell: Annotated[Optional[str], typer.Option(hidden=True, help="Set by fastpose sweep: the run is this cell.")] = None,
) -> None:
    """Train a model; the run journals itself (status, config, git, metrics, checkpoints)."""
    options = dict(locals())
    require_text_cwd()
    from fastpose.config import build_config
    from fastpose.journal.tags import validate_tag

    updates = {_TRAIN_KEYS[k]: v for k, v in options.items() if k in _TRAIN_KEYS and v is not None}
    if name is not None:
        updates["name"] = name
    base, origin_run = (None, None) if from_run is None else _config_of_run(from_run)
    carried = None  # --from: the run's thread count, unless the options or the --config file set one
    if origin_run is not None and "train.threads" not in updates and not _file_sets(config, "train", "threads"):
        from fastpose.environment import carry_threads

        updates["train.threads"], carried = carry_threads(origin_run.environment, origin_run.config,
                                                          f"run {origin_run.id}")
        carried = carried or f"threads {updates['train.threads']}, as run {origin_run.id} used"
    run_config = build_config(config, updates, base=base, require_name=not print_config)
    if print_config:
        from fastpose.config import toml_text

        text = toml_text(run_config.to_dict())
        if name is None and base is None and not _file_names_run(config):
            text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("name = "))
            text = '# name = "NAME"  (set it here or pass --name)\n' + text.lstrip("\n") + "\n"
        sys.stdout.write(text)
        return
    tags = tuple(validate_tag(t) for t in tag or ())
    cell = None
    if sweep_cell is not None:
        from fastpose.studies.spec import parse_sweep_cell

        cell = parse_sweep_cell(sweep_cell)

    from fastpose.training.runner import train as run_training

    origin = None
    if origin_run is not None:  # the new run's note says whose config it started from, and what changed
        from fastpose.config import config_changes

        changes = config_changes(origin_run.config, run_config.to_dict())
        if carried is not None:  # the thread count is said on its own
            changes = [c for c in changes if c[0] != "train.threads"]
        origin = (f"config from run {origin_run.id} ({origin_run.label}); "
                  + ("changed: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changes) if changes else "unchanged")
                  + (f"; {carried}" if carried is not None else ""))
        if carried is not None and not carried.startswith("threads "):
            print(f"note: {carried}", file=sys.stderr)
    raise typer.Exit(run_training(run_config, note=note, tags=tags, sweep_cell=cell, origin=origin).exit_code)


def _config_of_run(ref: str) -> tuple[dict, Any]:
    """``(config, run)`` of the run ``ref`` names (for ``train --from``); the journal is only read."""
    from fastpose.journal.access import read_run
    from fastpose.journal.db import missing_journal
    from fastpose.journal.reader import UnknownRunError

    run = read_run(ref, UnknownRunError(f"--from {ref!r}: {missing_journal()}"))
    return dict(run.config or {}), run


def _file_names_run(path: Optional[Path]) -> bool:
    return _file_sets(path, "name")


def _file_sets(path: Optional[Path], *key: str) -> bool:
    """Does the --config file set ``key`` (a path of tables, e.g. ``train``, ``threads``)?"""
    if path is None:
        return False
    from fastpose.config import load_toml

    value: Any = load_toml(path)
    for part in key:
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


@app.command()
def resume(
    run: Annotated[str, typer.Argument(help="The run to continue: id, label, label prefix or NAME (newest).")],
    epochs: Annotated[Optional[int], opt("Train until this many epochs in total (default: the parent's).")] = None,
    name: Annotated[Optional[str], opt("NAME of the new run (default: the parent's).")] = None,
    note: Annotated[Optional[str], opt("Why: stored as a note on the new run.")] = None,
    log_images: Annotated[Optional[int], opt("Validation samples drawn with pose axes into TensorBoard (0 = off; default: the parent's).")] = None,
    progress: Annotated[Optional[bool], opt("Show the progress bar (default: as the parent did).")] = None,
    threads: Annotated[Optional[int], opt("CPU threads of torch (default: the count the parent used, at most the CPUs this process may use; 0 = auto).")] = None,
) -> None:
    """Continue a run from its last.ckpt (full trainer state) as a new run linked to it."""
    require_text_cwd()
    from fastpose.training.resuming import launch_rank, locate

    display = {_TRAIN_KEYS[k]: v for k, v in (("log_images", log_images), ("progress", progress), ("threads", threads))
               if v is not None}
    # The run and its checkpoint are found before torch is imported: a mistyped name is answered at once.
    point = locate(run, epochs=epochs, name=name, updates=display) if launch_rank() == 0 else None
    from fastpose.training.runner import resume as run_resume

    raise typer.Exit(run_resume(run, epochs=epochs, name=name, note=note, updates=display, point=point).exit_code)
