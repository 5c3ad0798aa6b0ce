"""The Typer application every command file registers on (``fastpose.cli`` imports them all), and the shared
option helpers. No torch, Lightning or SQLAlchemy at module level: ``fastpose --help`` stays light."""

import os
from typing import Annotated, Any, Optional

import typer

from fastpose.errors import FastposeError

app = typer.Typer(
    name="fastpose",
    help="FastPoseCNN-style 6D pose estimation; every run writes itself into the journal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: skips importing typer.rich_utils (~0.1 s of every --help)
)


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


def opt(help: str, **kw: Any) -> Any:
    return typer.Option(help=help, show_default=False, **kw)


def require_text_cwd() -> None:
    """A run records its working directory (and keeps its run directory under it by default): refuse one
    whose name is not UTF-8 before anything is written."""
    try:
        os.getcwd().encode("utf-8")
    except UnicodeEncodeError:
        from fastpose.text import visible

        raise FastposeError(f"the working directory {visible(os.getcwd(), newlines=False)} is not valid UTF-8; "
                            "run from a directory whose name is") from None
