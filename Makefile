# The two commands of the README: `make run` (install, train the default model, write its
# report) and `make test` (install, lint, run the test suite). Both create .venv as needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  # the quickest recipe past 99.2% on test (docs/FRONTIER.md): about a minute
	$(BIN)/digitlab train --params fast-w32-e5

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports  # every import points down the data's path (pyproject.toml)

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache test-artifacts  # never runs/: the user's results
