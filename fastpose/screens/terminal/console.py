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


def fits(console: Console, renderable: Any) -> bool:
    """Does ``renderable`` (a table) fit the console's width at its natural size, nothing folded or cut?"""
    from rich.measure import Measurement

    return Measurement.get(console, console.options, renderable).maximum <= console.width


PIPED_WIDTH = 100  # what a screen is drawn at when it goes to a pipe or a file and $COLUMNS is not set


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _columns_set() -> bool:
    import os

    return os.environ.get("COLUMNS", "").strip().isdigit()
