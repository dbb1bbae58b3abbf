# The course's two commands (see README.md):
#   make course   build the whole course: run the gallery batches, execute every notebook, render the HTML book
#   make test     everything CI runs
# Each one first makes a local virtual environment in .venv (venv + pip) when it is missing
# or older than pyproject.toml. Set NSTLIB_QUICK=1 for the offline smoke-test scale.

PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed

# Tools started from here (jupyter kernels included) must find the venv's python first.
export PATH := $(BIN):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
export PYTHONUNBUFFERED := 1

.PHONY: course test lab clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

course: $(STAMP)
	NSTLIB_RESULTS="$(CURDIR)/results" $(BIN)/nstlib book build

# Unit tests, then every notebook executed by nbval in quick mode (outputs of cells marked
# `# NBVAL_CHECK_OUTPUT` compared with the stored ones).
test: $(STAMP)
	$(BIN)/python -m pytest
	NSTLIB_QUICK=1 NSTLIB_RESULTS="$(CURDIR)/results/nbval" $(BIN)/python -m pytest -p no:cacheprovider \
		--nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf results book/_build
