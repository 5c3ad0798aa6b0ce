"""``fastpose reproduce RUN``: rebuild the code a run ran (commit, diff, untracked files) in a fresh git
worktree and train its stored config there, as a new run linked to it; ``--check`` compares every number."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from fastpose.cli.app import app, opt


@app.command()
def reproduce(
    run: Annotated[str, typer.Argument(help="The run: id, label, label prefix or NAME (newest).")],
    check: Annotated[bool, typer.Option("--check", help="Then compare every number the run journaled with the new run's.")] = False,
    worktree: Annotated[Optional[Path], opt("Where to build the code (a path that does not exist) [default: <home>/reproduce/run<N>-<time>].")] = None,
    repo: Annotated[Optional[Path], opt("The git repository holding the run's commit [default: the one around the working directory].")] = None,
) -> None:
    """Rebuild the code RUN ran (its commit, diff and untracked files) in a new git worktree and train its
    stored config and seeds there as a new run that reproduces RUN (journal show says so).

    Refused, with nothing made, when the commit is not in the repository or the diff does not apply. Not
    rebuilt: the Python packages (this interpreter's), the machine, data outside the journal. Exit 0 when
    done (with --check: every number identical), 1 when the training did not complete or --check found
    differences, 2 when refused."""
    from fastpose.cli.common import console, replay_spools
    from fastpose.training.reproduce import reproduce as rebuild

    replay_spools()
    out = console()
    from rich.text import Text

    def say(line: str) -> None:
        out.print(Text(line))

    result = rebuild(run, worktree=worktree, repo=repo, with_check=check, say=say)
    original = result.original
    if result.run is None:
        say(f"the training in {result.worktree} wrote no run (exit {result.exit_code}); the worktree is kept")
        raise typer.Exit(1)
    new = result.run
    say(f"run #{new.id} {new.label}: {new.status}; reproduces #{original.id} {original.label}")
    say(f"the worktree stays at {result.worktree} (git worktree remove {result.worktree} removes it)")
    failed = new.status != "completed" or result.exit_code != 0
    if result.check is not None:
        from fastpose.screens.terminal.reproduction import render_check

        render_check(result.check, out)
        failed = failed or bool(result.check.differences)
    if failed:
        raise typer.Exit(1)
