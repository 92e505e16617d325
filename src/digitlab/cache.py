"""Evaluation inputs that do not depend on the model, made once and kept: the report's robustness
sample (rendered photos, scans, non-digits, each through preprocessing) and the validation
non-digits that calibrate every run. Making them is most of a quick model's evaluation; each is
the same for every model, so a second run reads it back.

An entry is named by everything that made it: the caller's key, the arrays it was made from, and
the source of the generators and preprocessing (data/ and image/) with digitlab's version, so a
change to any of them makes new entries instead of reading stale ones. Entries live in
$DIGITLAB_CACHE_DIR, else the user's cache (~/.cache/digitlab/inputs); the oldest go when the
folder passes LIMIT. DIGITLAB_CACHE_DIR=off makes everything afresh.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from digitlab.files import DISK_ERRORS, write_atomic
from digitlab.version import __version__

LIMIT = 256 * 2**20  # bytes: the full robustness suite of both splits is ~100 MB, the report's sample ~2 MB
MAKERS = ("data", "image")  # the packages whose code makes what is cached


def folder() -> Path | None:
    """Where entries are kept; None where caching is off."""
    chosen = os.environ.get("DIGITLAB_CACHE_DIR", "")
    if chosen.lower() in ("off", "0", "none"):
        return None
    if chosen:
        return Path(chosen)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "digitlab" / "inputs"


def arrays(name: str, key: tuple, make: Callable[[], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """What `make()` returns, read back where an entry for (`name`, `key`) exists. `key` holds
    numbers and strings; arrays enter it as their fingerprint()."""
    place = folder()
    if place is None:
        return make()
    path = place / f"{name}-{_digest(key)}.npz"
    try:
        with np.load(path) as stored:
            found = tuple(stored[f"a{i}"] for i in range(len(stored.files)))
        os.utime(path)  # recently used: pruned last
        return found
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # absent, or a damaged entry: made again
        pass
    made = make()
    buffer = io.BytesIO()
    np.savez(buffer, **{f"a{i}": a for i, a in enumerate(made)})
    try:
        write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
        _prune(place)
    except OSError as e:  # a cache that cannot be written only costs time
        if e.errno not in DISK_ERRORS:
            raise
    return made


def fingerprint(array: np.ndarray) -> str:
    """A digest of an array's type, shape and content."""
    h = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()


def _digest(key: tuple) -> str:
    return hashlib.sha256(repr((_source_digest(), *key)).encode()).hexdigest()[:32]


@functools.cache
def _source_digest() -> str:
    """digitlab's version and the code of the packages that make cached inputs."""
    root = Path(__file__).parent
    h = hashlib.sha256(__version__.encode())
    for package in MAKERS:
        for path in sorted((root / package).glob("*.py")):
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def _prune(place: Path) -> None:
    """The least recently used entries removed until the folder holds at most LIMIT bytes."""
    entries = []
    for path in place.glob("*.npz"):
        try:
            entries.append((path.stat(), path))
        except OSError:  # removed meanwhile by another process
            continue
    total = 0
    for stat, path in sorted(entries, key=lambda e: e[0].st_mtime, reverse=True):
        total += stat.st_size
        if total > LIMIT:
            path.unlink(missing_ok=True)
