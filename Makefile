# `make test` sets up everything it needs (a virtualenv, Python packages, the chassis
# wheel, and the real servers for the integration tests, built once and cached) and
# runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WHEELS := .wheels
CHASSIS_SOURCES := $(shell find chassis/src chassis/pyproject.toml chassis/README.md -type f -not -path '*/__pycache__/*')

.PHONY: test test-fast report bench cold-test wheels servers alert-rules clean

# `make test`: the tests marked solo alone, since they measure memory or time, then three
# test modules at a time (each worker starts its own servers on free ports), whose summary
# of failures thus ends the output; the exit code is the first phase's failure, else the
# second's. The servers and tools are built first, where their progress lines reach the
# terminal (xdist's workers print nothing).
test: $(VENV)/.installed $(WHEELS)/.built  ## every test but the few marked report_only (make report runs those)
	$(PY) -m tests.harness.prebuild
	status=0; \
	$(PY) -m pytest -m "solo and not report_only" || status=$$?; \
	$(PY) -m pytest -m "not report_only and not solo" -n 3 --dist loadfile --no-loadscope-reorder || status=$$(( status ? status : $$? )); \
	exit $$status

test-fast: $(VENV)/.installed $(WHEELS)/.built  ## the tests that need no server, three modules at a time
	$(PY) -m pytest -m "not infra and not reliability" -n 3 --dist loadfile --no-loadscope-reorder

report: $(VENV)/.installed $(WHEELS)/.built  ## one run of the reliability suite into docs/reliability.{md,json}
	RELIABILITY_REPORT_DIR=docs $(PY) -m pytest -m "reliability"

bench: $(VENV)/.installed $(WHEELS)/.built  ## writes docs/benchmarks.{md,json}; not part of `make test`
	$(PY) bench/run.py

cold-test: $(VENV)/.installed  ## times `make test` in a fresh clone with every cache empty: docs/cold-test.md
	$(PY) bench/cold.py

wheels: $(WHEELS)/.built  ## the chassis wheel that services in this repository install

servers:  ## builds (or finds in the cache) every native server, printing its progress
	PYTHONPATH=infrastructure/native $(PYTHON) -m platform_native build

alert-rules:  ## renders infrastructure/prometheus/rules/alerts.yml from alerting/thresholds.toml
	PYTHONPATH=infrastructure/native $(PYTHON) -m platform_native alert-rules

$(WHEELS)/.built: $(VENV)/.installed $(CHASSIS_SOURCES)
	rm -rf $(WHEELS)
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir $(WHEELS) ./chassis
	touch $@

# uv installs the packages: from a filled cache it takes seconds where pip took most of a
# minute. pip installs uv itself, at the version requirements-dev.txt pins. uv reads its
# own settings, not pip's: pip's find-links and index are passed on (as the installer does).
UV_PIP_SETTINGS := $(foreach folder,$(PIP_FIND_LINKS),--find-links=$(folder)) $(if $(PIP_INDEX_URL),--index-url=$(PIP_INDEX_URL))
$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$$(grep -o '^uv==[^ ]*' requirements-dev.txt)"
	$(PY) -m uv pip install --quiet --python $(PY) $(UV_PIP_SETTINGS) --upgrade-package pip pip -r requirements-dev.txt
	touch $@

clean:
	rm -rf $(VENV) $(WHEELS) .pytest_cache
