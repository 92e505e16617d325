"""The command line: `digitlab COMMAND` (app.py), its commands in train.py and use.py."""

from digitlab.cli.app import main

__all__ = ["main"]
