"""``fastpose sweep``: every combination of a sweep file's axes as journaled runs. The command hands the
launchers their faces and ``train``'s check of trainer settings (``fastpose.studies.sweep.SweepHooks``)."""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fastpose.cli.app import app, opt


@app.command()
def sweep(
    file: Annotated[Optional[Path], typer.Argument(help="Sweep file: a base config plus a [sweep] table of axes.")] = None,
    jobs: Annotated[int, opt("Cells side by side (local launcher); the CPU threads are split between them.")] = 1,
    launcher: Annotated[str, opt("local (subprocesses here) | slurm (submitit; needs a PostgreSQL journal).")] = "local",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the cells and exit; nothing is written.")] = False,
    resume: Annotated[Optional[str], opt("Continue the sweep with this id from the journal (no file needed).")] = None,
) -> None:
    """Run every combination of the sweep file's axes as journaled runs; re-running continues the sweep."""
    from fastpose.screens.terminal.sweep import LiveTable, print_cells, print_choice
    from fastpose.studies.sweep import SweepHooks, sweep_command

    hooks = SweepHooks(table=LiveTable, cells=print_cells, choice=print_choice, check_settings=_check_settings)
    raise typer.Exit(sweep_command(file, jobs=jobs, launcher=launcher, dry_run=dry_run, resume=resume, hooks=hooks))


def _check_settings(config: Any, *, on_this_machine: bool = True) -> None:
    """``train``'s check of Lightning's settings; Lightning is imported only when a sweep has one to check."""
    from fastpose.training.runner import check_trainer_settings

    check_trainer_settings(config, on_this_machine=on_this_machine)
