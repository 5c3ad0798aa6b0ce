"""Image sizes as text and as ``(height, width)``: plain Python, for the config, the command line and the science.

=========================  =====================================================================
``image_hw(size)``         ``int`` (a square) or ``(height, width)`` -> ``(height, width)``
``parse_image_size(text)`` ``"WIDTHxHEIGHT"`` (``"640x480"``) or ``"SIDE"`` -> ``(height, width)``,
                           each side a positive multiple of ``multiple``; else ``ValueError``
``format_image_size(hw)``  ``(height, width)`` -> ``"WIDTHxHEIGHT"``, a square -> ``"SIDE"``
=========================  =====================================================================

Text puts the width first, as image sizes are written (640x480); tuples put the height first, as arrays
are indexed (``image[:, v, u]``). The text is ASCII digits around one ``x`` (either case, spaces allowed
around the whole), nothing else: no signs, underscores or other scripts' digits.
"""

from __future__ import annotations

import re
from numbers import Integral

_SIZE_TEXT = re.compile(r"([0-9]{1,9})(?:[xX]([0-9]{1,9}))?", re.ASCII)


def image_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``(height, width)`` of an image size given as an ``int`` (a square) or a ``(height, width)`` pair."""
    if isinstance(size, Integral) and not isinstance(size, bool):
        h = w = int(size)
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(
            isinstance(v, Integral) and not isinstance(v, bool) for v in size):
        h, w = int(size[0]), int(size[1])
    else:
        raise ValueError(f"an image size is an int (a square) or (height, width), not {size!r}")
    if h < 1 or w < 1:
        raise ValueError(f"image sizes are positive, not {size!r}")
    return h, w


def parse_image_size(text: str, multiple: int = 1) -> tuple[int, int]:
    """``"WIDTHxHEIGHT"`` or ``"SIDE"`` -> ``(height, width)``; each side a positive multiple of ``multiple``.

    Raises ``ValueError`` with the one line a user needs (the caller turns it into its own error)."""
    match = _SIZE_TEXT.fullmatch(str(text).strip())
    values = [int(v) for v in match.groups() if v is not None] if match else []
    if not values or any(v <= 0 for v in values):
        shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:37] + "..."
        raise ValueError(f"an image size is WIDTHxHEIGHT (e.g. 640x480) or one number for a square, not {shown}")
    w, h = (values[0], values[0]) if len(values) == 1 else values
    if w % multiple or h % multiple:
        raise ValueError(f"image width and height must be multiples of {multiple}, got {w}x{h}")
    return h, w


def format_image_size(size: int | tuple[int, int]) -> str:
    """``(height, width)`` -> ``"WIDTHxHEIGHT"``; a square -> its side (``"64"``)."""
    h, w = image_hw(size)
    return str(h) if h == w else f"{w}x{h}"
