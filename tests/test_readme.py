"""The README and the documentation index as a user follows them: every link leads to a file,
every docs page is listed, every command is one the CLI has, and the "Try it" commands print
what the README says they print, run as a user would from the repository root."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT, digitlab

PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "docs" / "README.md", ROOT / "docs" / "USAGE.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(page.read_text()) if "://" not in target]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_leads_to_a_file(page):
    broken = [t for t in links(page) if not (page.parent / t.split("#")[0]).resolve().exists()]
    assert links(page) and not broken, broken


def test_every_docs_page_is_listed():
    docs = ROOT / "docs"
    listed = {(ROOT / t).resolve() for t in links(ROOT / "README.md")}
    indexed = {(docs / t).resolve() for t in links(docs / "README.md")}
    pages = {p.resolve() for p in docs.glob("*.md") if p.name != "README.md"}
    assert not pages - listed, sorted(str(p) for p in pages - listed)  # the README's Documentation list
    assert not {p.resolve() for p in docs.rglob("*.md") if p.name != "README.md"} - indexed


def test_the_readme_names_only_commands_the_cli_has():
    import typer

    from digitlab.cli.app import app

    commands = set(typer.main.get_command(app).commands)
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S))
    named = set(re.findall(r"^digitlab (\w[\w-]*)", blocks, re.M))
    assert named and named <= commands, named - commands
    assert set(re.findall(r"^make (\w+)", blocks, re.M)) == {"run", "test"}
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_try_it_prints_what_the_readme_says():
    readme = (ROOT / "README.md").read_text()
    shown_output = re.findall(r"^(digitlab predict [^#\n]+?)\s+# (\S+)", readme, re.M)
    assert len(shown_output) >= 2  # a digit and a number
    for command, shown in shown_output:
        result = digitlab(*command.split()[1:], cwd=ROOT)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split(": ", 1)[1].startswith(shown), (command, result.stdout)
