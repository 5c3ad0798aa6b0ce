"""Render the everyday screens as pictures for the README: ``journal.png``, ``show.png``, ``compare.png`` (and
rich's own SVG export of each) in this folder.

    .venv/bin/python docs/screens/make_screens.py --home JOURNAL_HOME --show RUN --compare RUN RUN [--width 120]

Each screen is drawn by the very functions the commands call (``render_daily_log``, ``render_run``,
``compare.render``) on fastpose's safe console with ``record=True``; ``Console.save_svg`` writes the SVG, and the
PNG is drawn from the same recorded segments with Pillow in DejaVu Sans Mono (cairo is not needed). A
documentation tool: nothing in fastpose imports it, and it adds no runtime dependency (Pillow comes with
matplotlib; the font must be installed: ``fonts-dejavu-core``).
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
FONTS = Path("/usr/share/fonts/truetype/dejavu")
BACKGROUND, FOREGROUND = (30, 30, 30), (212, 212, 212)
FONT_SIZE, LINE_HEIGHT, MARGIN = 15, 20, 14


def recording_console(width: int):  # noqa: ANN201 - rich Console
    from fastpose.screens.terminal.console import safe_console

    return safe_console(record=True, width=width, file=io.StringIO(), force_terminal=True, color_system="truecolor")


def screen_journal(console, args) -> None:  # noqa: ANN001
    from fastpose.journal.access import open_reader
    from fastpose.screens.daily_log import load_daily_log
    from fastpose.screens.terminal.daily_log import render_daily_log

    reader = open_reader()
    try:
        render_daily_log(load_daily_log(reader, limit=50), console)
    finally:
        reader.close()


def screen_show(console, args) -> None:  # noqa: ANN001
    from fastpose.journal.access import open_reader
    from fastpose.screens.run import load_run_detail
    from fastpose.screens.terminal.run import render_run

    reader = open_reader()
    try:
        detail = load_run_detail(reader, reader.resolve(args.show))
    finally:
        reader.close()
    render_run(detail, console)


def screen_compare(console, args) -> None:  # noqa: ANN001
    from fastpose.screens.comparison import load_comparison
    from fastpose.screens.terminal.comparison import render

    render(load_comparison(list(args.compare)), console, spark=True)


def to_png(console, path: Path) -> None:  # noqa: ANN001
    """Draw the console's recorded segments: one monospace cell per character column, rich's colours."""
    from PIL import Image, ImageDraw, ImageFont
    from rich.segment import Segment

    fonts = {(bold, italic): ImageFont.truetype(str(FONTS / ("DejaVuSansMono" + ("-Bold" if bold else "")
                                                             + ("Oblique" if italic and bold else "-Oblique" if italic else "")
                                                             + ".ttf")), FONT_SIZE)
             for bold in (False, True) for italic in (False, True)}
    from fontTools.ttLib import TTFont  # comes with matplotlib

    covers = {key: set(TTFont(font.path).getBestCmap()) for key, font in fonts.items()}
    cell = fonts[(False, False)].getlength("M")
    lines = list(Segment.split_lines(console._record_buffer))  # noqa: SLF001 - what export_svg reads too
    while lines and not "".join(s.text for s in lines[-1]).strip():
        lines.pop()
    width = int(console.width * cell + 2 * MARGIN)
    image = Image.new("RGB", (width, len(lines) * LINE_HEIGHT + 2 * MARGIN), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        x = MARGIN
        y = MARGIN + row * LINE_HEIGHT
        for segment in line:
            if segment.control:
                continue
            style = segment.style
            colour = FOREGROUND
            if style is not None and style.color is not None and not style.color.is_default:
                colour = style.color.get_truecolor().rgb if hasattr(style.color.get_truecolor(), "rgb") \
                    else tuple(style.color.get_truecolor())
            if style is not None and style.dim:
                colour = tuple(int(c * 0.6 + b * 0.4) for c, b in zip(colour, BACKGROUND))
            key = (bool(style and style.bold), bool(style and style.italic))
            for ch in segment.text:  # a symbol the oblique face lacks (✎): the upright one
                font = fonts[key] if ord(ch) in covers[key] else fonts[(key[0], False)]
                draw.text((x, y), ch, font=font, fill=colour)
                x += cell
            if style is not None and style.underline:
                draw.line((x - cell * len(segment.text), y + LINE_HEIGHT - 3, x, y + LINE_HEIGHT - 3), fill=colour)
    image.save(path, optimize=True)


SCREENS = {"journal": screen_journal, "show": screen_show, "compare": screen_compare}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True, help="the journal home (FASTPOSE_HOME) to draw")
    ap.add_argument("--show", required=True, help="the run for `journal show`")
    ap.add_argument("--compare", nargs="+", required=True, help="the runs for `compare`")
    ap.add_argument("--width", type=int, default=120, help="terminal columns")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    os.environ["FASTPOSE_HOME"] = str(args.home)
    os.environ.pop("FASTPOSE_JOURNAL_URL", None)
    for name, draw in SCREENS.items():
        console = recording_console(args.width)
        draw(console, args)
        console.save_svg(str(args.out / f"{name}.svg"), title=f"fastpose {name}", clear=False)
        to_png(console, args.out / f"{name}.png")
        print(f"wrote {args.out / name}.png and .svg")


if __name__ == "__main__":
    main()
