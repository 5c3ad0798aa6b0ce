"""The terminal's console: every fastpose command prints through ``safe_console()``, user strings enter rich
renderables as ``lit(...)``. Why, and what ``visible`` does to text: ``fastpose.text``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from fastpose.text import visible

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


def lit(text: object, style: str = "", *, newlines: bool = True) -> Text:
    """A user string as literal rich ``Text`` (no markup), control characters visible."""
    from rich.text import Text

    return Text(visible("" if text is None else text, newlines=newlines), style=style)


def safe_console(**kwargs: Any) -> Console:
    """The Console every fastpose command prints with (see the module docstring)."""
    from rich.console import Console
    from rich.segment import Segment

    class SafeConsole(Console):
        def _render_buffer(self, buffer):  # noqa: ANN001, ANN202 - rich's own hook, one place for all output
            return super()._render_buffer(
                seg if seg.control else Segment(visible(seg.text), seg.style, seg.control) for seg in buffer
            )

    options = {"markup": False, "emoji": False, "highlight": False}
    if "width" not in kwargs:  # the terminal's width, else $COLUMNS, else PIPED_WIDTH (a pipe, a file)
        stream = kwargs.get("file") or (sys.stderr if kwargs.get("stderr") else sys.stdout)
        options["width"] = None if _isatty(stream) or _columns_set() else PIPED_WIDTH
    options.update(kwargs)
    return SafeConsole(**options)


BREAK_AFTER = "-/ "  # where a run label or a path may be broken over lines (after the character)


def break_lines(text: Text, width: int) -> list[Text]:
    """``text`` cut into lines of at most ``width`` cells, each cut just after a ``BREAK_AFTER`` character
    (``26-11-27/`` | ``09-15-AGG_QLOSS-``), never inside a word or a NAME; only a word longer than the
    whole width is cut inside it. Styles are kept; a line's trailing spaces are dropped."""
    import re

    width = max(1, width)
    if text.cell_len <= width:
        return [text]
    plain = text.plain
    offsets, line_len = [], 0
    for match in re.finditer(rf"[^{re.escape(BREAK_AFTER)}]*[{re.escape(BREAK_AFTER)}]+|.+$", plain):
        start, word = match.start(), match.group()
        if line_len and line_len + len(word.rstrip()) > width:  # the word starts the next line
            offsets.append(start)
            line_len = 0
        while len(word) > width:  # longer than a line: cut it
            offsets.append(start + width - line_len)
            word, start, line_len = word[width - line_len:], start + width - line_len, 0
        line_len += len(word)
    lines = text.divide(offsets)
    for line in lines:
        line.rstrip()
    return [line for line in lines if line.plain]


def print_broken(console: Console, text: Text) -> None:
    """Print ``text`` (a line holding a path or a label) over as many lines as the width needs, each broken
    after a ``BREAK_AFTER`` character (``break_lines``), never inside a word that fits a line."""
    for line in break_lines(text, console.width):
        console.print(line, soft_wrap=True)


def fits(console: Console, renderable: Any) -> bool:
    """Does ``renderable`` (a table) fit the console's width at its natural size, nothing folded or cut?"""
    from rich.measure import Measurement

    unbounded = console.options.update_width(1 << 16)  # measured at its natural width, not clamped to the console's
    return Measurement.get(console, unbounded, renderable).maximum <= console.width


PIPED_WIDTH = 100  # what a screen is drawn at when it goes to a pipe or a file and $COLUMNS is not set


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _columns_set() -> bool:
    import os

    return os.environ.get("COLUMNS", "").strip().isdigit()
