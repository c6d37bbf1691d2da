# Two commands do all set-up, and both are safe to re-run:
#   make start   run the app locally on emulators
#   make test    run every test (unit, contract, integration on emulators)
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
VENV_STAMP  := $(VENV)/.installed
NODE_STAMP  := node_modules/.installed
INFRA_VENV  := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help start test bench venv emulators-install infra-tools clean

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

# The tools of the infra checks (tests/infra/: checkov, pycep-parser, actionlint, ShellCheck)
# in their own virtual environment: checkov pins many packages and runs on Python 3.9-3.12
# only. INFRA_PYTHON=/path/to/python3.12 picks the interpreter.
$(INFRA_STAMP): requirements-infra.txt
	@set -e; python=""; \
	for c in $${INFRA_PYTHON:-} python3.12 python3.11 python3.10 \
	         $$HOME/.pyenv/versions/3.12*/bin/python3.12 $$HOME/.pyenv/versions/3.11*/bin/python3.11 \
	         /usr/bin/python3.12 /usr/bin/python3.11 python3; do \
	  if "$$c" -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 12))' >/dev/null 2>&1; then python=$$c; break; fi; \
	done; \
	if [ -z "$$python" ]; then echo "No Python 3.9-3.12 for the infra checks (checkov): install one or set INFRA_PYTHON." >&2; exit 1; fi; \
	echo "Creating $(INFRA_VENV) with $$python"; rm -rf $(INFRA_VENV); "$$python" -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-infra.txt
	@touch $@

infra-tools: $(INFRA_STAMP)

# INFRA_TOOLS_BIN: where tests/infra/ finds the tools (INFRA_CHECKS=skip skips those tests).
test: $(VENV_STAMP) $(NODE_STAMP) $(INFRA_STAMP)
	INFRA_TOOLS_BIN=$(CURDIR)/$(INFRA_VENV)/bin $(PY) -m pytest $(PYTEST_ARGS)

# ARGS passes options through, e.g. make start ARGS="--no-emulators --port 7072"
start: $(VENV_STAMP) $(NODE_STAMP)
	$(PY) -m devhost.start $(ARGS)

# Benchmarks (not tests): prints a table and writes bench/results.json.
bench: $(VENV_STAMP) $(NODE_STAMP)
	$(PY) -m bench.run $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) $(INFRA_VENV) node_modules .emulators .pytest_cache
