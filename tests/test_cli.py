"""The CLI as a user meets it: version, short help, and a `make clean` that keeps results."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import ROOT, digitlab, tmpfs

from digitlab import __version__


def test_version_and_short_help():
    result = digitlab("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"digitlab {__version__}"
    for args in (("-h",), ("train", "-h"), ("robustness", "-h")):
        result = digitlab(*args)
        assert result.returncode == 0 and "Usage: digitlab" in result.stdout, args


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_clean_keeps_the_users_runs():
    plan = subprocess.run(["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    removed = plan.split("#")[0].split()
    assert "rm" in removed and ".pytest_cache" in removed
    assert "runs" not in removed and "runs/" not in removed


def test_training_where_it_cannot_write_is_one_line(data_dir):
    # /sys refuses new folders even to root: a read-only place to write.
    out = ("--out", "/sys/digitlab-run", "--data-dir", str(data_dir))
    result = digitlab("train", "--model", "logreg", "--subset", "100", "--epochs", "1", *out)
    assert result.returncode == 2 and "cannot write the run folder /sys/digitlab-run" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


@pytest.fixture
def full_disk(tmp_path):
    """A 48 KB tmpfs: room for run.json, none for the first checkpoint. Needs root (as CI has)."""
    with tmpfs(tmp_path / "tiny", "48k") as mount:
        yield mount


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(full_disk, data_dir):
    out = full_disk / "run"
    args = (
        "train",
        "--model",
        "mlp",
        "--subset",
        "100",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--data-dir",
        str(data_dir),
    )
    result = digitlab(*args)
    assert result.returncode == 2, result.stderr
    assert f"cannot write the run folder {out} (No space left on device)" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists() and list(full_disk.iterdir()) == []  # no epoch finished: nothing to resume, nothing kept
