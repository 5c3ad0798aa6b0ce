"""A ``PaperTable`` as Markdown: a GitHub pipe table with the caption above and the notes below; every
piece of text escaped (``\\ ` * _ [ ] < > | ~ & $``; ``$`` starts math on GitHub), so user text is never read as markup."""

from __future__ import annotations

import re

from fastpose.screens.tables import Cell, PaperTable
from fastpose.text import visible

_MARKUP = re.compile(r"([\\`*_\[\]<>|~&$])")


def escape(text: object) -> str:
    """``text`` as Markdown that shows it: markup characters backslash-escaped, control characters shown as
    escapes, newlines as spaces (a table row is one line)."""
    one_line = visible(text, newlines=True).replace("\n", " ").replace("\t", " ")
    return _MARKUP.sub(r"\\\1", one_line)


def _cell(cell: Cell) -> str:
    text = escape(cell.text)
    if cell.sd is not None:
        text += " ± " + escape(cell.sd)
    if cell.arrow:
        text += " ↑" if cell.arrow == "up" else " ↓"
    return f"**{text}**" if cell.bold else text


def to_markdown(table: PaperTable) -> str:
    """The table in Markdown: the caption in italics, the pipe table, the notes as a list."""
    rule = ["---:" if a == "r" else ":---" for a in table.align]
    out = [f"*{escape(table.caption)}*", "",
           "| " + " | ".join(_cell(c) for c in table.header) + " |",
           "| " + " | ".join(rule) + " |"]
    for row in table.rows:
        out.append("| " + " | ".join(_cell(c) for c in row) + " |")
    if table.notes:
        out.append("")
        out += [f"- {escape(note)}" for note in table.notes]
    return "\n".join(out) + "\n"
