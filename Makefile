# The two commands a new user runs first (see README.md):
#   make demo   set up a virtual environment and run the demo on the sample movie
#   make test   set up a virtual environment and run the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deathtrack-installed

.PHONY: setup demo test lint format clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "deathtrack needs Python >= 3.10; run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deathtrack demo --out demo_results

# tests in 2 processes, one file per worker at a time (its module fixtures made once);
# `make test PYTEST_ARGS=` runs them in this process, e.g. to debug one
PYTEST_ARGS ?= -n 2 --dist loadfile

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) demo_results .pytest_cache .ruff_cache
