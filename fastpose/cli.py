"""The `fastpose` command line: thin Typer commands that parse options and call one function each.

No torch or Lightning import at module level: `fastpose --help`, `fastpose journal` and `fastpose compare`
stay fast and work without them. Heavy modules are imported inside the command bodies.
"""

from __future__ import annotations

import os
import sys

import typer

from fastpose.errors import FastposeError
from fastpose.journal.commands import journal_app

app = typer.Typer(
    name="fastpose",
    help="FastPoseCNN-style 6D pose estimation; every run writes itself into the journal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(journal_app, name="journal")


# train / resume / compare are added in fastpose/cli.py by the training work (issue 4).


def main() -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except FastposeError as exc:
        if os.environ.get("FASTPOSE_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
