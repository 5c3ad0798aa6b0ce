"""A ``PaperTable`` as LaTeX: a ``table`` float with a booktabs ``tabular``; every piece of text escaped.

Needs ``\\usepackage{booktabs}`` in the document (the first line of the output says so). The text is UTF-8:
Latin letters with accents compile with pdflatex as they are (LaTeX reads UTF-8 since 2018); other scripts
need xelatex or lualatex. ``°`` and ``±`` are written as LaTeX commands.
"""

from __future__ import annotations

from fastpose.screens.tables import Cell, PaperTable
from fastpose.text import visible

# Every character LaTeX reads as markup, and the two symbols of our own headings, as text commands.
LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", "°": r"\textdegree{}", "±": r"\ensuremath{\pm}", "–": "--", "\n": " ", "\t": " ",
}


def escape(text: object) -> str:
    """``text`` as LaTeX that prints it: ``_ % & # $ { } ~ ^ \\`` (and ``< > |``) as text, control characters
    shown as escapes (``\\x1b``), newlines as spaces."""
    return "".join(LATEX_ESCAPES.get(ch, ch) for ch in visible(text, newlines=True))


def _cell(cell: Cell) -> str:
    text = escape(cell.text)
    if cell.sd is not None:
        text += r" \ensuremath{\pm} " + escape(cell.sd)
    if cell.arrow:
        text += r" \ensuremath{\uparrow}" if cell.arrow == "up" else r" \ensuremath{\downarrow}"
    return rf"\textbf{{{text}}}" if cell.bold else text


def to_latex(table: PaperTable) -> str:
    """The table as a LaTeX ``table`` float (caption, label, booktabs rules, notes under the tabular)."""
    out = [
        r"% fastpose: needs \usepackage{booktabs} in the preamble",
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{escape(table.caption)}}}",
    ]
    if table.label:
        out.append(rf"\label{{{table.label}}}")
    out += [rf"\begin{{tabular}}{{{table.align}}}", r"\toprule",
            " & ".join(_cell(c) for c in table.header) + r" \\", r"\midrule"]
    for i, row in enumerate(table.rows):
        if i in table.rule_before and i:
            out.append(r"\midrule")
        out.append(" & ".join(_cell(c) for c in row) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        out.append(r"\par\smallskip")
        out.append(r"{\footnotesize " + r" \\ ".join(escape(note) for note in table.notes) + "}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"
