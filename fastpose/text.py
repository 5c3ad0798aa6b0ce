"""User text is data, never markup: one place that makes any string safe to show.

Run names, notes, config values, command lines, paths, file names and tracebacks come from users (or from
files users control). Two things can go wrong when they are printed:

- rich reads ``[...]`` as markup: ``see [/bold]`` raises ``MarkupError``, ``/data/nocs[v2]`` prints as
  ``/data/nocs``, ``:smile:`` becomes an emoji.
- control characters reach the terminal: ``\\x1b[2J`` clears it, an OSC sequence sets its title or a link,
  ``\\r`` overwrites what was printed, a bidi override reorders the line (and the Markdown export carries
  them into every viewer).

fastpose prints through ``fastpose.screens.terminal.console.safe_console()`` only: markup, emoji and
highlighting are off, and every text segment is passed through ``visible()`` just before it is written, so
whatever a renderable holds, no control character reaches the terminal (our own colours are styles, applied
outside the text). ``lit()`` there wraps a user string in a ``rich.text.Text`` with the escapes applied up
front (so column widths are measured on what is shown). ``visible()`` is also what the Markdown export, the
web pages' text and the ``error:`` line go through. This module is pure Python (no rich): the journal and
every face use it. ``--json`` output is
not touched: JSON escapes control characters itself and stays exact.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# C0 controls except newline and tab, DEL, C1 controls, and the Unicode bidi/isolate overrides; lone
# surrogates (undecodable bytes from the OS, decoded with surrogateescape) too.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_NO_NL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, f"\\x{code:02x}")
    return f"\\u{code:04x}"


def visible(text: object, *, newlines: bool = True) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\u202e``); ``newlines=False``
    escapes newlines and tabs too (for one-line cells and the ``error:`` line)."""
    s = text if isinstance(text, str) else str(text)
    return (_UNSAFE if newlines else _UNSAFE_NO_NL).sub(_escape, s)


def clean_str(text: str) -> str:
    """A string safe to store (UTF-8 encodable): undecodable bytes that the OS handed over as lone
    surrogates (non-UTF-8 paths, arguments, environment) become ``\\xNN`` escapes."""
    if not isinstance(text, str):
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return re.sub("[\ud800-\udfff]", _escape, text)


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def strict_json(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value``: no ``NaN``/``Infinity`` tokens (written as null), times as ISO text.
    What every ``--json`` output, the journal's JSON columns and the spool are written with."""
    return json.dumps(finite_json(value), allow_nan=False, default=str, **kwargs)
