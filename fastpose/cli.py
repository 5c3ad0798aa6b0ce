"""The `fastpose` command line: thin Typer commands that parse options and call one function each.

No torch or Lightning import at module level: `fastpose --help`, `fastpose journal` and `fastpose compare`
stay fast and work without them. Heavy modules are imported inside the command bodies.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fastpose.errors import FastposeError
from fastpose.journal.commands import journal_app

app = typer.Typer(
    name="fastpose",
    help="FastPoseCNN-style 6D pose estimation; every run writes itself into the journal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: skips importing typer.rich_utils (~0.1 s of every --help)
)
app.add_typer(journal_app, name="journal")


def _version(value: bool) -> None:
    if value:
        from fastpose.journal.git import fastpose_version, package_dir

        print(f"fastpose {fastpose_version()} ({package_dir()})")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print fastpose's version and where it is imported from.")] = None,
) -> None:
    """FastPoseCNN-style 6D pose estimation; every run writes itself into the journal."""


# ------------------------------------------------------------------------------------------- train
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
    "limit_train_batches": "train.limit_train_batches",
    "limit_val_batches": "train.limit_val_batches",
    "log_images": "train.log_images",
    "progress": "train.progress_bar",
}


def _opt(help: str, **kw: Any) -> Any:
    return typer.Option(help=help, show_default=False, **kw)


def _dflt(key: str, help: str, **kw: Any) -> Any:
    """An option of a RunConfig key: its help says the default (fastpose/config.py), which applies when
    neither the option nor the --config file (nor --from) sets it."""
    from fastpose.config import DEFAULTS, _toml_value

    value = DEFAULTS[key]
    shown = "none" if value is None else (value if isinstance(value, str) else _toml_value(value))
    return typer.Option(help=f"{help} [default: {shown}]", show_default=False, **kw)


# Options of `train` that change only what a run displays; `resume` takes them too.
DISPLAY_OPTIONS = ("progress", "log_images")


@app.command()
def train(
    name: Annotated[Optional[str], _opt("Run NAME (required unless the --config file sets it).")] = None,
    config: Annotated[Optional[Path], _opt("TOML config file (tables data, model, loss, train); options given here override it.")] = None,
    note: Annotated[Optional[str], _opt("Why this run: stored as its first journal note.")] = None,
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
    image_size: Annotated[Optional[int], _dflt("data.image_size", "Square image side, a multiple of 32.")] = None,
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
    accelerator: Annotated[Optional[str], _dflt("train.accelerator", "Lightning accelerator: cpu | gpu | auto | ...")] = None,
    devices: Annotated[Optional[str], _dflt("train.devices", "Lightning devices: a count, a list like 0,1, or auto.")] = None,
    strategy: Annotated[Optional[str], _dflt("train.strategy", "Lightning strategy: auto | ddp | ...")] = None,
    num_nodes: Annotated[Optional[int], _dflt("train.num_nodes", "Nodes for multi-node DDP.")] = None,
    precision: Annotated[Optional[str], _dflt("train.precision", "Lightning precision: 32-true | 16-mixed | bf16-mixed | 64-true.")] = None,
    limit_train_batches: Annotated[Optional[float], _dflt("train.limit_train_batches", "Batches per epoch: a fraction <= 1.0 or a count >= 2.")] = None,
    limit_val_batches: Annotated[Optional[float], _dflt("train.limit_val_batches", "Validation batches: a fraction <= 1.0 or a count >= 2.")] = None,
    log_images: Annotated[Optional[int], _dflt("train.log_images", "Validation samples drawn with pose axes into TensorBoard (0 = off).")] = None,
    progress: Annotated[Optional[bool], _dflt("train.progress_bar", "Show the progress bar.")] = None,
    tag: Annotated[Optional[list[str]], _opt("Tag the run (repeatable): journal --tag T lists runs by tag.")] = None,
    from_run: Annotated[Optional[str], typer.Option("--from", metavar="RUN", show_default=False, help="Start from the config of RUN (id, label, prefix or NAME); --config and the options given override it.")] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config as TOML (what --config reads) and exit; nothing is trained or written.")] = False,
    sweep_cell: Annotated[Optional[str], typer.Option(hidden=True, help="Set by fastpose sweep: the run is this cell.")] = None,
) -> None:
    """Train a model; the run journals itself (status, config, git, metrics, checkpoints)."""
    options = dict(locals())
    _require_text_cwd()
    from fastpose.config import build_config
    from fastpose.journal.tags import validate_tag

    updates = {_TRAIN_KEYS[k]: v for k, v in options.items() if k in _TRAIN_KEYS and v is not None}
    if name is not None:
        updates["name"] = name
    base, origin_run = (None, None) if from_run is None else _config_of_run(from_run)
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
        from fastpose.compare import config_changes

        changes = config_changes(origin_run.config, run_config.to_dict())
        origin = (f"config from run {origin_run.id} ({origin_run.label}); "
                  + ("changed: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changes) if changes else "unchanged"))
    raise typer.Exit(run_training(run_config, note=note, tags=tags, sweep_cell=cell, origin=origin).exit_code)


def _config_of_run(ref: str) -> tuple[dict, Any]:
    """``(config, run)`` of the run ``ref`` names (for ``train --from``); the journal is only read."""
    from fastpose.journal.reader import UnknownRunError, read_run

    run = read_run(ref, UnknownRunError(f"--from {ref!r}: the journal has no runs"))
    return dict(run.config or {}), run


def _file_names_run(path: Optional[Path]) -> bool:
    if path is None:
        return False
    from fastpose.config import load_toml

    return "name" in load_toml(path)


@app.command()
def resume(
    run: Annotated[str, typer.Argument(help="The run to continue: id, label, label prefix or NAME (newest).")],
    epochs: Annotated[Optional[int], _opt("Train until this many epochs in total (default: the parent's).")] = None,
    name: Annotated[Optional[str], _opt("NAME of the new run (default: the parent's).")] = None,
    note: Annotated[Optional[str], _opt("Why: stored as a note on the new run.")] = None,
    log_images: Annotated[Optional[int], _opt("Validation samples drawn with pose axes into TensorBoard (0 = off; default: the parent's).")] = None,
    progress: Annotated[Optional[bool], _opt("Show the progress bar (default: as the parent did).")] = None,
) -> None:
    """Continue a run from its last.ckpt (full trainer state) as a new run linked to it."""
    _require_text_cwd()
    from fastpose.training.runner import resume as run_resume

    display = {_TRAIN_KEYS[k]: v for k, v in (("log_images", log_images), ("progress", progress)) if v is not None}
    raise typer.Exit(run_resume(run, epochs=epochs, name=name, note=note, updates=display).exit_code)


@app.command()
def sweep(
    file: Annotated[Optional[Path], typer.Argument(help="Sweep file: a base config plus a [sweep] table of axes.")] = None,
    jobs: Annotated[int, _opt("Cells side by side (local launcher); the CPU threads are split between them.")] = 1,
    launcher: Annotated[str, _opt("local (subprocesses here) | slurm (submitit; needs a PostgreSQL journal).")] = "local",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the cells and exit; nothing is written.")] = False,
    resume: Annotated[Optional[str], _opt("Continue the sweep with this id from the journal (no file needed).")] = None,
) -> None:
    """Run every combination of the sweep file's axes as journaled runs; re-running continues the sweep."""
    from fastpose.studies.sweep import sweep_command

    raise typer.Exit(sweep_command(file, jobs=jobs, launcher=launcher, dry_run=dry_run, resume=resume))


@app.command()
def compare(
    runs: Annotated[Optional[list[str]], typer.Argument(help="Two or more runs: id, label, label prefix or NAME.")] = None,
    plot: Annotated[Optional[Path], _opt("Also draw the metric curves into this PNG file.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    sweep: Annotated[Optional[str], _opt("Compare the groups of this sweep (its id): statistics and a verdict.")] = None,
    by: Annotated[Optional[list[str]], _opt("Group the runs by this config key, e.g. loss.name (repeatable).")] = None,
    csv_out: Annotated[bool, typer.Option("--csv", help="Groups: print one CSV row per run (config, final and best metrics).")] = False,
    tuning: Annotated[bool, typer.Option("--tuning", help="With --sweep: the sweep's [tune] stage instead of its final cells.")] = False,
    spark: Annotated[bool, typer.Option("--spark", help="Add each metric's history as a sparkline (a resumed run's with its parent's).")] = False,
    per_class: Annotated[bool, typer.Option("--per-class", help="Also list (and plot) the per-class metrics.")] = False,
    metric: Annotated[Optional[list[str]], _opt("Only this metric (repeatable; the primary metric is always kept), e.g. val/rot_err_median.")] = None,
) -> None:
    """Side by side: status, metrics (best highlighted, deltas to the first run), config and code differences.

    With --sweep ID or --by KEY: one row per group (n, mean ± sd, min-max) and Welch's t-test of the best
    group against each other on the primary metric."""
    from fastpose.compare import check_plot_path

    if plot is not None:
        check_plot_path(plot)  # before reading anything
    if tuning and sweep is None:
        raise FastposeError("--tuning needs --sweep ID")
    if sweep is not None or by:
        _compare_groups(runs or [], sweep, by or [], plot, json_out, csv_out, tuning, metric or [])
        return
    if csv_out:
        raise FastposeError("--csv needs groups: add --sweep ID or --by KEY")
    from fastpose.compare import load_comparison, plot as plot_runs, render, select_metrics

    cmp = load_comparison(list(runs or []))
    if metric:
        select_metrics(cmp, metric)
    if plot is not None:
        plot_runs(cmp, str(plot), per_class=per_class)
    if json_out:
        from fastpose.text import strict_json

        print(strict_json(cmp.to_json(), indent=2))
        return
    from fastpose.text import safe_console, visible

    render(cmp, safe_console(), spark=spark, per_class=per_class)
    if plot is not None:
        print(f"plot written to {visible(plot)}")


def _require_text_cwd() -> None:
    """A run records its working directory (and keeps its run directory under it by default): refuse one
    whose name is not UTF-8 before anything is written."""
    try:
        os.getcwd().encode("utf-8")
    except UnicodeEncodeError:
        from fastpose.text import visible

        raise FastposeError(f"the working directory {visible(os.getcwd(), newlines=False)} is not valid UTF-8; "
                            "run from a directory whose name is") from None


def check_argv(argv: list[str]) -> None:
    """Arguments must be text: bytes that are not UTF-8 (decoded by Python as lone surrogates) are refused,
    and so is a NUL character, which no real command line can hold (``run`` called in-process can pass one,
    and the option parser's paths would hand it to ``os.stat``)."""
    for i, arg in enumerate(argv, 1):
        if "\x00" in arg:
            from fastpose.text import visible

            raise FastposeError(f"argument {i} ({visible(arg, newlines=False)}) holds a NUL character")
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            from fastpose.text import visible

            raise FastposeError(f"argument {i} ({visible(arg, newlines=False)}) is not valid UTF-8") from None


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    The one place errors reach the user: a FastposeError, or a failure the user's environment caused
    (``fastpose.errors.as_user_error``: permissions, a read-only or full disk, a locked journal), becomes one
    ``error:`` line on stderr (control characters made visible) and its exit code, 2 unless documented
    otherwise. Anything else is a bug and keeps its traceback. ``FASTPOSE_DEBUG=1`` shows every traceback.
    """
    try:
        return _run(sys.argv[1:] if argv is None else list(argv))
    except BrokenPipeError:  # `fastpose journal | head`: the reader left; end quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _run(argv: list[str]) -> int:
    from fastpose.errors import as_user_error

    try:
        check_argv(argv)
        from fastpose.environment import check_environment

        check_environment()
        result = app(args=argv, prog_name="fastpose", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:  # a bad option or argument (click's UsageError): one line
        from fastpose.text import visible

        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `fastpose`: the help, as --help shows it
            print(exc.format_message())  # type: ignore[attr-defined]
            return 0

        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"error: {visible(exc.format_message(), newlines=False)}{where}", file=sys.stderr)  # type: ignore[attr-defined]
        return getattr(exc, "exit_code", 2)
    except Exception as exc:
        error = as_user_error(exc)
        if error is None or os.environ.get("FASTPOSE_DEBUG"):
            raise
        from fastpose.text import visible

        print(f"error: {visible(error, newlines=False)}", file=sys.stderr)
        return error.exit_code
    return 0


def _compare_groups(runs: list[str], sweep: Optional[str], by: list[str], plot: Optional[Path], json_out: bool,
                    csv_out: bool, tuning: bool = False, metrics: Optional[list[str]] = None) -> None:
    if json_out and csv_out:
        raise FastposeError("choose one of --json and --csv")
    from fastpose.studies.groups import load_groups, plot as plot_groups, render

    cmp = load_groups(sweep=sweep, refs=runs, by=by, tuning=tuning)
    if metrics:
        from fastpose.compare import select_metrics

        select_metrics(cmp, metrics)
    if plot is not None:
        plot_groups(cmp, str(plot))
    if csv_out:
        sys.stdout.write(cmp.csv_text())
        return
    if json_out:
        from fastpose.text import strict_json

        print(strict_json(cmp.to_json(), indent=2))
        return
    from fastpose.text import safe_console, visible

    render(cmp, safe_console())
    if plot is not None:
        print(f"plot written to {visible(plot)}")


@app.command("eval")
def eval_command(
    run: Annotated[str, typer.Argument(help="The run: id, label, label prefix or NAME (newest).")],
    checkpoint: Annotated[str, _opt("best (the monitor's best), last, or a checkpoint file.")] = "best",
    split: Annotated[str, _opt("val (the run's validation set) | test (held out).")] = "val",
    dataset: Annotated[Optional[str], _opt("synthetic | nocs (default: the run's).")] = None,
    data_root: Annotated[Optional[str], _opt("NOCS dataset folder (default: the run's).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the evaluation as JSON.")] = False,
) -> None:
    """NOCS-format evaluation of a checkpoint on a split: table per class, PR curves (PNG), journaled."""
    from fastpose.evaluate import evaluate_run

    evaluate_run(run, checkpoint=checkpoint, split=split, dataset=dataset, data_root=data_root, json_out=json_out)


@app.command()
def predict(
    run: Annotated[str, typer.Argument(help="The run: id, label, label prefix or NAME (newest).")],
    images: Annotated[list[str], typer.Argument(help="Image files (any size; centre-cropped and resized as in training).")],
    intrinsics: Annotated[Optional[str], _opt("fx,fy,cx,cy of the original images (OpenCV convention).")] = None,
    out: Annotated[Optional[str], _opt("Folder for the overlay PNGs (default: <run dir>/predictions).")] = None,
    checkpoint: Annotated[str, _opt("best, last, or a checkpoint file.")] = "best",
    json_out: Annotated[bool, typer.Option("--json", help="Print the detections as JSON.")] = False,
    max_pixels: Annotated[Optional[int], _opt("Refuse images with more pixels than this (read from the file's header) [default: 100000000].")] = None,
) -> None:
    """Detected objects per image: class, score, quaternion (x, y, z, w), translation and size (m); overlays."""
    from fastpose.predict import predict_images

    predict_images(run, images, intrinsics=intrinsics, out=out, checkpoint=checkpoint, json_out=json_out,
                   **({} if max_pixels is None else {"max_pixels": max_pixels}))


def main() -> None:
    """Console-script entry point (``fastpose``): see ``run``."""
    sys.exit(run())
