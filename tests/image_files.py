"""Large image files made cheaply, for the tests of ``predict``'s pixel limit and overlay size."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def solid_png(path: Path, width: int, height: int, rgb: tuple[int, int, int] = (40, 90, 160)) -> Path:
    """A valid 8-bit RGB PNG of one colour (a 20000 x 20000 one is about 1 MB and takes a second).

    One row is compressed once, ended by a full flush (a byte-aligned point after which nothing refers to
    earlier data), and repeated ``height`` times in the zlib stream; only the Adler-32 checksum is computed
    over all rows."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)  # raw deflate: the zlib header and checksum are ours
    block = raw.compress(row) + raw.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(height):
        adler = zlib.adler32(row, adler)
    stream = b"\x78\x9c" + block * height + b"\x03\x00" + struct.pack(">I", adler)  # \x03\x00: empty final block
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b""))
    return path
