"""The package's layout is a contract: subpackages along the data's path, every import pointing
down (pyproject.toml's import-linter layers), no circle anywhere, small modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import digitlab

PACKAGE = Path(digitlab.__file__).parent
MAX_LINES = 320  # "about 300": a module past this holds two ideas


def test_every_import_points_down_the_layers():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], capture_output=True, text=True, cwd=PACKAGE.parents[1])
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph("digitlab")
    circles = {
        tuple(sorted((a, b)))
        for a in graph.modules
        for b in graph.find_modules_directly_imported_by(a)
        if graph.chain_exists(importer=b, imported=a)
    }
    assert circles == set()


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.name}: {lines} lines; split it by idea"


def test_the_flat_layout_is_gone():
    """Modules live in the subpackage of their stage; only the shared base sits at the top."""
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "cache", "environment", "errors", "files", "progress", "version"]


def test_the_public_api_is_not_shadowed_by_a_subpackage():
    """`digitlab.train` and `digitlab.evaluate` are the functions, whatever was imported before."""
    probe = (
        "import importlib, pkgutil, digitlab\n"
        "for m in pkgutil.walk_packages(digitlab.__path__, 'digitlab.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "print(callable(digitlab.train), callable(digitlab.evaluate), callable(digitlab.load_mnist))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "True", "True"]
