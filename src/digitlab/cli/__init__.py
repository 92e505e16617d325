"""The command line: `digitlab COMMAND` (app.py), its commands in train.py and use.py."""

from digitlab.cli.app import main, run

__all__ = ["main", "run"]
