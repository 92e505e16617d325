"""Writes polyglot.tif: a valid 32x32 blank TIFF whose bytes also parse as an IFUNC IM header
declaring a 6300x6300 32-bit float image (~40 Mpx, ~160 MB decoded) in ~1.2 KB.

Pillow tries its IM parser (which has no magic-byte test) before TIFF's, so a reader that opens
uploads with every format enabled decodes the IM header instead of the TIFF that an allow-listed
header check saw. Run: python tests/corpus/make_polyglot.py
"""

from __future__ import annotations

import struct
from pathlib import Path

SIDE = 32  # the TIFF's own size: small and blank
IM_HEADER = b": digitlab corpus\nImage type: L 32F image\nImage size (x*y): 6300*6300\n\x1a"


def polyglot() -> bytes:
    # TIFF: "II*\0" then the IFD's offset; the first IM "line" runs from there to the first "\n".
    strip = 8 + len(IM_HEADER)
    ifd = strip + SIDE * SIDE
    entries = [  # tag, type (3 SHORT, 4 LONG), count, value
        (256, 3, 1, SIDE),  # width
        (257, 3, 1, SIDE),  # height
        (258, 3, 1, 8),  # bits per sample
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1),  # black is zero
        (273, 4, 1, strip),  # strip offset
        (277, 3, 1, 1),  # samples per pixel
        (278, 3, 1, SIDE),  # rows per strip
        (279, 4, 1, SIDE * SIDE),  # strip byte count
    ]
    table = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        field = struct.pack("<I", value) if kind == 4 else struct.pack("<HH", value, 0)  # left-justified
        table += struct.pack("<HHI", tag, kind, count) + field
    data = b"II*\x00" + struct.pack("<I", ifd) + IM_HEADER + bytes(SIDE * SIDE) + table + b"\x00\x00\x00\x00"
    assert b"\n" not in data[4:8]  # the offset must not end the first IM line early
    return data


if __name__ == "__main__":
    out = Path(__file__).with_name("polyglot.tif")
    out.write_bytes(polyglot())
    print(out, len(polyglot()), "bytes")
