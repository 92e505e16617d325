"""Run folders: find them, read their config, tell their status. No Keras import."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from .config import TrainConfig
from .errors import DigitlabError
from .files import read_json


def list_runs(root: str | Path) -> list[dict]:
    """Every run.json under `root`, oldest first, each with its folder as `path`."""
    records = (read_json(p) | {"path": p.parent} for p in Path(root).glob("*/run.json"))
    return sorted(records, key=lambda r: r.get("created", ""))


def load_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise DigitlabError(f"{run_dir} is not a digitlab run folder (no run.json)")
    return TrainConfig(**read_json(path)["config"])


def run_status(record: dict) -> str:
    """The recorded status, except that a 'running' run whose process is gone (killed with
    SIGKILL, power cut) could not write its own end: it is reported as 'crashed'."""
    status = record.get("status", "unknown")
    if status == "running" and record.get("host") == platform.node() and not _alive(record.get("pid")):
        return "crashed"
    return status


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reproduce(record: dict) -> str:
    """The command that made a run: recorded (ensembles) or derived from its config."""
    return record.get("command") or "digitlab train " + TrainConfig(**record["config"]).cli_args()
