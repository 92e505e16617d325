"""`python -m digitlab.cli`."""

from digitlab.cli.app import run

run()
