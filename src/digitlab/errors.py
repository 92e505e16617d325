"""digitlab's user errors, and the hints they end with: the install command for a missing extra
(install_hint), the name probably meant (suggest)."""

from __future__ import annotations

import difflib
import json
import shlex
from pathlib import Path
from urllib.parse import unquote, urlparse


class DigitlabError(Exception):
    """A user error: the message is one line that names the problem and the fix.

    The CLI prints it without a traceback and exits with status 2.
    """


class Interrupted(Exception):
    """Ctrl-C during a run, once the run has recorded it: the message says how to go on.

    Not a KeyboardInterrupt: the CLI framework would swallow that into a bare abort.
    """


def suggest(name: str, known: list[str], listed_by: str) -> str:
    """For a name not among `known`: the nearest one if it looks misspelt, else all of them."""
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean '{close[0]}'? (`{listed_by}` lists them all)"
    return f"choose one of: {', '.join(known)}"


def install_hint(extra: str) -> str:
    """The pip command that adds digitlab's `extra` (train, serve, tune) from where the user stands.
    digitlab is not on the package index, so `pip install 'digitlab[train]'` would fail: the command
    names the source this digitlab came from. A source checkout (this file under src/digitlab/ of
    a clone, an editable install): `pip install -e '.[train]'` in its root, else with its path."""
    root = Path(__file__).resolve().parents[2]
    if _is_digitlab_source(root):
        return f"pip install -e {_folder(root, extra)}"
    from importlib import metadata  # here: every process imports this module, few ask this

    try:
        origin = json.loads(metadata.distribution("digitlab").read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        origin = {}
    return from_origin(origin, extra)


def from_origin(origin: dict, extra: str) -> str:
    """The pip command for `extra` given where pip installed digitlab from (its direct_url.json,
    PEP 610): a folder (`pip install '.[serve]'` in a clone), a wheel or archive, a repository."""
    url = origin.get("url", "")
    if "dir_info" in origin and url.startswith("file:"):
        folder = Path(unquote(urlparse(url).path))
        if _is_digitlab_source(folder):
            editable = "-e " if origin["dir_info"].get("editable") else ""
            return f"pip install {editable}{_folder(folder, extra)}"
    elif url:
        vcs = origin.get("vcs_info")
        if vcs:
            url = f"{vcs['vcs']}+{url}" + (f"@{vcs['commit_id']}" if vcs.get("commit_id") else "")
        return f"pip install {shlex.quote(f'digitlab[{extra}] @ {url}')}"
    return f"pip install {shlex.quote(f'digitlab[{extra}]')}"  # from an index that has it


def _is_digitlab_source(folder: Path) -> bool:
    project = folder / "pyproject.toml"
    return project.is_file() and 'name = "digitlab"' in project.read_text(errors="replace")


def _folder(root: Path, extra: str) -> str:
    """'.[extra]' in the folder itself (the command to type there), else its absolute path."""
    try:
        here = Path.cwd().resolve() == root.resolve()
    except OSError:  # the folder the user stands in was deleted
        here = False
    return shlex.quote(f".[{extra}]" if here else f"{root}[{extra}]")
