"""The process's environment: variables set for a block only (digitlab leaves os.environ as it
found it), the cores it may run on, alone or as one of several processes, and how a serving
process hands memory back."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def temporarily(values: dict[str, str], keep_set: bool = False) -> Iterator[None]:
    """`values` in os.environ for the block, then each variable as it was before. `keep_set`:
    a variable the user set already keeps their value (`values` are defaults)."""
    before = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if not (keep_set and before[name] is not None):
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cores() -> int:
    """The cores this process may run on (its affinity, where the system says)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def take_share(processes: int) -> int:
    """For a process that is one of `processes` reading on this machine's cores, which it owns
    (a worker digitlab started): OpenCV's threads set to its share of the cores, and that share,
    for ONNX Runtime's. A thread per core in each would have them contend."""
    import cv2

    share = max(1, cores() // max(1, processes))
    cv2.setNumThreads(share)
    return share


# glibc's mallopt parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# From this size each allocation is mapped on its own: only a large image's arrays are that big
# (a 1 Mpx float image is 4 MB; a 400x400 photo's are under).
LARGE_ALLOCATION = 4 * 1024 * 1024
# The heap's free top is handed back only once this much lies there: more than the arrays of an
# image under that size take at once (a 512 px work image's are 1 MB each, a few alive together).
KEEP_FREE = 16 * 1024 * 1024


def tune_allocator() -> None:
    """For a serving process (which owns itself): glibc's heap set for a server's images.

    Each allocation of LARGE_ALLOCATION or more is mapped on its own, and so handed back when
    freed: left to itself, glibc raises that bar after the first such free (up to 32 MB) and then
    serves large images from its heap, which it seldom gives back (a server that had read a few
    16 Mpx uploads held ~100 MB more than it used). Fixing that bar fixes glibc's trim bar too, at
    128 KB, so each request handed its arrays' memory back for the next to fault in again, page
    by page: in a virtual machine, about a fifth of a 400x400 photo's time (docs/BENCHMARKS.md).
    Now the heap is trimmed only once KEEP_FREE lies free at its top.

    A command that reads files keeps glibc's own settings: it ends before large images' memory
    matters, and mapping each one anew would cost it the page faults."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc; another C library has its own ways
    except OSError:
        return
    if hasattr(libc, "mallopt"):
        libc.mallopt(M_MMAP_THRESHOLD, LARGE_ALLOCATION)
        libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREE)
