# `make test` sets up everything it needs (a virtualenv, Python packages, and the
# real servers for the integration tests, built once and cached) and runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test test-fast bench servers render-services clean

test: $(VENV)/.installed
	$(PY) -m pytest

servers:  ## builds (or finds in the cache) every native server, printing its progress
	PYTHONPATH=infrastructure/native $(PYTHON) -m platform_native build

render-services: $(VENV)/.installed  ## re-renders services/* from their saved answers
	$(PY) infrastructure/render_services.py

bench: $(VENV)/.installed  ## writes docs/benchmarks.{md,json}; not part of `make test`
	$(PY) bench/run.py

test-fast: $(VENV)/.installed  ## the template tests only, no servers
	$(PY) -m pytest -m "not infra and not reliability"

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache
