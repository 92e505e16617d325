"""The package's version, at the bottom of the house: run records and the servers report it."""

__version__ = "0.3.0"
