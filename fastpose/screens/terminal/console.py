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
    if "width" not in kwargs:  # piped output: a wide page, labels never cut, unless $COLUMNS says otherwise
        options["width"] = None if sys.stdout.isatty() or _columns_set() else 200
    options.update(kwargs)
    return SafeConsole(**options)


def _columns_set() -> bool:
    import os

    return os.environ.get("COLUMNS", "").strip().isdigit()
