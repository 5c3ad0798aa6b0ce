"""``--latex`` and ``--markdown``: the one check of the output options and the one writer of tables for a
paper, shared by ``eval`` and ``compare`` (runs, ``--sweep``, ``--by``)."""

import sys
from typing import Any, Optional

import typer

from fastpose.errors import FastposeError

LATEX_HELP = "Print the table as LaTeX (booktabs; best value bold per column) for a paper."
MARKDOWN_HELP = "Print the table as Markdown (a pipe table; best value bold per column)."


def latex_option() -> Any:
    return typer.Option("--latex", help=LATEX_HELP)


def markdown_option() -> Any:
    return typer.Option("--markdown", help=MARKDOWN_HELP)


def table_format(latex: bool, markdown: bool, **others: bool) -> Optional[str]:
    """``"latex"``, ``"markdown"`` or None; more than one output format (``others``: ``json=...``) is refused
    before anything is read or written."""
    chosen = [name for name, on in (("--latex", latex), ("--markdown", markdown),
                                    *((f"--{k}", v) for k, v in others.items())) if on]
    if len(chosen) > 1:
        raise FastposeError(f"choose one of {' and '.join(chosen)}")
    return "latex" if latex else "markdown" if markdown else None


def print_table(kind: str, table: Any) -> None:
    """Write a ``PaperTable`` to stdout in ``kind`` (latex | markdown)."""
    if kind == "latex":
        from fastpose.screens.tables.latex import to_latex

        sys.stdout.write(to_latex(table))
    else:
        from fastpose.screens.tables.markdown import to_markdown

        sys.stdout.write(to_markdown(table))
