"""The CLI as a user meets it: version, short help, and a `make clean` that keeps results."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import ROOT, digitlab

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
