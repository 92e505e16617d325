"""The IDX format MNIST ships in: parsed strictly (a damaged file is one clear error), and its
header written back; files may be gzip-compressed whatever their name says."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from digitlab.errors import DigitlabError

IDX_UBYTE = 0x08  # the only element type MNIST uses


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes: magic (0, 0, type, ndim), ndim big-endian uint32 sizes, then data."""
    if len(raw) < 4:
        raise DigitlabError(f"corrupt IDX file {name}: only {len(raw)} bytes; replace it with a fresh copy")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != IDX_UBYTE or not 1 <= ndim <= 3:
        raise DigitlabError(
            f"corrupt IDX file {name}: bad magic 0x{raw[:4].hex()} (expected 0x0000080N of unsigned bytes); "
            "replace it with a fresh copy"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DigitlabError(f"corrupt IDX file {name}: header truncated; replace it with a fresh copy")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DigitlabError(
            f"corrupt IDX file {name}: {kind} ({len(raw)} bytes, header says {expected}); replace it with a fresh copy"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def idx_header(array: np.ndarray) -> bytes:
    return struct.pack(f">HBB{array.ndim}I", 0, IDX_UBYTE, array.ndim, *array.shape)


def read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzip (detected by its magic, not its name)."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    try:
        return gunzip(path) if gz else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DigitlabError(f"corrupt gzip file {path}: {e}; replace it with a fresh copy") from None


def gunzip(path: Path) -> bytes:
    with gzip.open(path) as f:
        return f.read()
