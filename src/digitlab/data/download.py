"""Fetch a data set's gzipped files from the first mirror that serves each, every file verified.

A file is renamed into place only once its decompressed content matches the SHA-256 it should
have: an interrupted or tampered download leaves nothing that later passes for the data.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

from digitlab.data.idx import gunzip
from digitlab.errors import DigitlabError
from digitlab.files import write_atomic


def download(
    dest: Path, what: str, files: dict[str, tuple[str, str]], mirrors: tuple[str, ...], timeout: float = 30
) -> dict[str, Path]:
    """Fetch the data set `what`'s `files` (key: (name, SHA-256 of the content)), each as
    `name`.gz into `dest`, verified before it is renamed into place; their paths by key. A folder
    made here and left empty by a failure is removed again."""
    import http.client

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    made = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    out = {}
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, transient=True) as progress:
        for key, (name, sha) in files.items():
            target = dest / f"{name}.gz"
            for mirror in mirrors:
                try:
                    url = f"{mirror}{name}.gz"
                    write_atomic(target, lambda tmp, url=url, sha=sha: _fetch(url, tmp, sha, timeout, progress))
                    out[key] = target
                    break
                except (OSError, http.client.HTTPException, ValueError) as e:
                    errors.append(f"{mirror}{name}.gz: {e}")
            else:
                if made and not any(dest.iterdir()):
                    dest.rmdir()
                raise DigitlabError(
                    f"could not download {name}.gz from any mirror ({errors[-1]}); "
                    f"put the {len(files)} {what} files into {dest} by hand, or pass --data-dir"
                )
    return out


def _fetch(url: str, tmp: Path, sha: str, timeout: float, progress) -> None:
    import urllib.request  # here: every reading process imports this module's package

    request = urllib.request.Request(url, headers={"User-Agent": "digitlab"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as f:
        size = int(response.headers.get("Content-Length") or 0) or None
        task = progress.add_task(url.rsplit("/", 1)[-1], total=size)
        while chunk := response.read(1 << 16):
            f.write(chunk)
            progress.advance(task, len(chunk))
        progress.remove_task(task)
    try:
        content = gunzip(tmp)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"not a valid gzip file ({e})") from None
    if hashlib.sha256(content).hexdigest() != sha:
        raise ValueError("SHA-256 of the content does not match the one published")
