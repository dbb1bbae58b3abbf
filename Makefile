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

.PHONY: course test test-fast test-pythons lab clean

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

# The developer loop: unit tests without the slow ones (book build, benchmark smoke run, papermill grid).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# For maintainers (not CI): the unit tests under every supported Python found on this machine
# (pyenv's interpreters where present, else python3.X on PATH), each in its own .venv-3.X.
PYTHONS ?= $(or $(sort $(wildcard $(HOME)/.pyenv/versions/3.1[0-9].*/bin/python3)),$(foreach v,10 11 12 13 14,$(shell command -v python3.$(v))))
test-pythons:
	@set -e; for py in $(PYTHONS); do \
	  version=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  $$py -c 'import sys; sys.exit(sys.version_info < (3, 10))' || continue; \
	  venv=.venv-$$version; echo "== Python $$version ($$py) in $$venv"; \
	  [ -x $$venv/bin/python ] || $$py -m venv $$venv; \
	  $$venv/bin/python -m pip install --quiet -e ".[dev]"; \
	  $$venv/bin/python -m pytest -q -p no:cacheprovider -m "not slow"; \
	done

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf results book/_build
