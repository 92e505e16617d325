"""Tests read the real MNIST from ../shared/data/mnist (or $DIGITLAB_DATA_DIR) and never download."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["foreign_models"]  # the tutorials' models, built once per session

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("DIGITLAB_DATA_DIR", ROOT.parent / "shared" / "data" / "mnist")).resolve()


@pytest.fixture(scope="session")
def inputs_cache(tmp_path_factory) -> Path:
    """One cache of evaluation inputs (cache.py) for the session: its entries are named by what
    made them, so tests share them as runs on one machine do."""
    return tmp_path_factory.mktemp("inputs")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch, inputs_cache):
    """No downloads; caches point at an empty temp home so a user's own copy never leaks in."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("DIGITLAB_OFFLINE", "1")
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(inputs_cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("KERAS_HOME", str(home / ".keras"))
    monkeypatch.delenv("DIGITLAB_DATA_DIR", raising=False)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"real MNIST not found at {DATA_DIR}; set DIGITLAB_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def mnist(data_dir):
    from digitlab.data.mnist import load_mnist

    return load_mnist(data_dir)


def digitlab(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600):
    """Run the real CLI in a fresh process, as a user would, from a scratch folder (never the repo)."""
    full_env = {**os.environ, **(env or {})}
    if cwd is None:
        cwd = Path(tempfile.mkdtemp(prefix="digitlab-cwd-"))
    return subprocess.run(
        [sys.executable, "-m", "digitlab.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
    )


def until(condition: Callable[[], bool], seconds: float, every: float = 0.05) -> bool:
    """Whether `condition` held within `seconds`, asked every `every` s: a wait on what a test
    needs to have happened, not a fixed sleep that a loaded machine outruns."""
    deadline = time.monotonic() + seconds
    while not (held := condition()) and time.monotonic() < deadline:
        time.sleep(every)
    return held


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A real, small file system at `path` (tmpfs of `size`, e.g. "48k"), for full-disk tests.
    Mounting needs root, as CI has; elsewhere the test is skipped, saying why."""
    path.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)
