"""Atomic writes (a reader, a crash or a full disk never leaves a half-written file) and JSON read
within bounds (a hostile file is refused in one line, never a RecursionError or a hang)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# What a full, read-only or forbidden place to write raises: the user's to fix, not a bug.
DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})

# A write in progress is `.digitlab-tmp-HOST-PID-RANDOM-NAME`: named so that the next write into the
# same folder knows it, and whether the process that made it is gone (killed, a power cut).
TEMP_PREFIX = ".digitlab-tmp-"
_HOST = hashlib.sha1(platform.node().encode()).hexdigest()[:6]
_TEMP = re.compile(re.escape(TEMP_PREFIX) + r"([0-9a-f]{6})-(\d+)-")
# Another machine's (a shared folder): its process cannot be asked, so only when this old.
STALE_ELSEWHERE_S = 24 * 3600
_NAME_KEPT = 150  # of the final name in a temporary one: its suffixes (.weights.h5) choose formats

# JSON read from files is digitlab's own, small and shallow: run.json, serving.json, a model's
# metadata (Keras' config.json of a large model is a few MB and ~20 levels deep). A file past these
# bounds was not written by digitlab or Keras; the numbers' bound keeps int() from its 4,300-digit
# ValueError and float64's 17 digits plus an exponent fit it many times.
JSON_CHARS = 32 * 2**20
JSON_DEPTH = 64
JSON_NUMBER = 64


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary path beside `path`, flush it to the disk, then rename it into
    place. Temporary files that killed processes left in the folder are removed first.

    The temporary name ends with the final one, since some writers (Keras, matplotlib) choose the
    format from its suffixes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(), suffix=f"-{path.name[-_NAME_KEPT:]}")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide reports from other users
        write(Path(tmp))
        _fsync(tmp)  # the data on the disk before the name: a crash never leaves a renamed empty file
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def temp_folder(path: str | Path) -> Path:
    """A scratch folder beside `path`, named as write_atomic's temporary files are (so that one a
    killed process left is removed by the next write there); the caller removes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)
    return Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(), suffix=f"-{path.name[-_NAME_KEPT:]}"))


def remove_stale(folder: str | Path) -> list[Path]:
    """Remove the temporary files and folders in `folder` whose writer is gone; return them."""
    removed = []
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(TEMP_PREFIX)]
    except OSError:
        return removed
    for entry in entries:
        found = _TEMP.match(entry.name)
        if found is None:
            continue
        host, pid = found.group(1), int(found.group(2))
        try:
            stale = not pid_alive(pid) if host == _HOST else time.time() - entry.stat().st_mtime > STALE_ELSEWHERE_S
            if not stale:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:  # gone already (another process cleaned it), or not ours to remove
            continue
        removed.append(Path(entry.path))
    return removed


def pid_alive(pid: int | None) -> bool:
    """Whether a process of this id runs on this machine."""
    if not pid or pid < 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone; an id no process can have
        return False
    except PermissionError:  # another user's
        return True
    return True


def _temp_prefix() -> str:
    return f"{TEMP_PREFIX}{_HOST}-{os.getpid()}-"


def _fsync(path: str | Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk; a filesystem that cannot says so
    with EINVAL, and there is then nothing more to do."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # a folder on a system that cannot open one
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask, read without changing it: os.umask() reads it only by setting a new
    one, and a thread creating a file in between would get that one. Linux shows it in
    /proc/self/status; elsewhere set-and-restore is the only way (it leaves the mask as it was)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def read_json(path: str | Path, limit: int = JSON_CHARS) -> Any:
    """A JSON file within the bounds of parse_json(), else UnreadableJSON."""
    path = Path(path)
    size = path.stat().st_size
    if size > limit:
        raise UnreadableJSON(f"{path} holds {size:,} bytes, more than the {limit:,} digitlab reads as JSON")
    return parse_json(path.read_bytes(), str(path), limit)


class UnreadableJSON(ValueError):
    """JSON that is damaged or past parse_json()'s bounds; the message is one line naming where.
    (A ValueError, not a DigitlabError: this base module imports nothing of digitlab; its callers
    turn it into one, with what to do about it.)"""


def parse_json(text: str | bytes, source: str, limit: int = JSON_CHARS) -> Any:
    """JSON from a file digitlab did not necessarily write: at most `limit` characters, JSON_DEPTH
    levels of nesting and JSON_NUMBER characters in one number, else UnreadableJSON naming
    `source` (a file, or a file and where in it)."""
    if len(text) > limit:
        raise UnreadableJSON(f"{source} holds {len(text):,} characters of JSON, more than the {limit:,} digitlab reads")
    try:
        value = json.loads(text, parse_int=_number(int, source), parse_float=_number(float, source))
    except UnreadableJSON:
        raise
    except RecursionError:  # json's own parser gives up near Python's recursion limit
        raise UnreadableJSON(f"{source} nests JSON more than {JSON_DEPTH} levels deep") from None
    except ValueError as e:  # JSONDecodeError, and bytes that are not UTF-8
        raise UnreadableJSON(f"{source} is not JSON ({str(e).splitlines()[0][:80]})") from None
    stack = [(value, 1)]  # the depth, walked without recursion: the readers after this may recurse
    while stack:
        item, depth = stack.pop()
        if depth > JSON_DEPTH:
            raise UnreadableJSON(f"{source} nests JSON more than {JSON_DEPTH} levels deep")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return value


def _number(kind: type, source: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if len(text) > JSON_NUMBER:
            raise UnreadableJSON(f"{source} holds a number of {len(text):,} digits")
        return kind(text)

    return parse


def _jsonable(obj: Any) -> Any:
    # numpy scalars and arrays show up in metrics; JSON wants plain Python.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
