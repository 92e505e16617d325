"""The robustness suite: how a model reads what people bring (suite.py: the conditions and
their measurement) and the tables and picture that report it (tables.py)."""

from digitlab.robustness.suite import (
    READERS,
    SEED,
    Result,
    Suite,
    measure,
    not_digits,
    prepare_files,
    read_prepared,
    real_input_seed,
    real_inputs,
    suite_seed,
)
from digitlab.robustness.tables import FILES, markdown, plot, to_csv, wilson, write

__all__ = [
    "FILES",
    "READERS",
    "SEED",
    "Result",
    "Suite",
    "markdown",
    "measure",
    "not_digits",
    "plot",
    "prepare_files",
    "read_prepared",
    "real_input_seed",
    "real_inputs",
    "suite_seed",
    "to_csv",
    "wilson",
    "write",
]
