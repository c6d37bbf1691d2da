# Two commands do all set-up, and both are safe to re-run:
#   make start   run the app locally on emulators
#   make test    run every test (unit, contract, integration on emulators)
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
VENV_STAMP  := $(VENV)/.installed
NODE_STAMP  := node_modules/.installed
PYTEST_ARGS ?=

.PHONY: help start test bench venv emulators-install clean

help:
	@echo "make start   run the app locally on emulators (http://localhost:7071)"
	@echo "make test    run every test"
	@echo "make bench   measure speed and memory against the naive baseline (QUICK=1: reduced sizes)"

# A Python 3.13 virtual environment with the app's and the tests' dependencies.
$(VENV_STAMP): requirements.txt requirements-dev.txt scripts/find-python
	@set -e; python=$$(scripts/find-python); \
	if ! [ -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then \
	  echo "Creating $(VENV) with $$python"; rm -rf $(VENV); "$$python" -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV_STAMP)

# The local emulators (Azurite, Cosmos DB API server), pinned by package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

emulators-install: $(NODE_STAMP)

test: $(VENV_STAMP) $(NODE_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# ARGS passes options through, e.g. make start ARGS="--no-emulators --port 7072"
start: $(VENV_STAMP) $(NODE_STAMP)
	$(PY) -m devhost.start $(ARGS)

# Benchmarks (not tests): prints a table and writes bench/results.json.
bench: $(VENV_STAMP) $(NODE_STAMP)
	$(PY) -m bench.run $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) node_modules .emulators .pytest_cache
