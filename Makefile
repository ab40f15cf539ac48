# hailong: the two commands of the README, and helpers.
#
# Debian's python3 is "externally managed" (PEP 668): pip may not install into it. Everything
# Python runs from a project virtual environment, .venv, made from Debian's /usr/bin/python3
# (python3-venv, installed by scripts/install-system-deps.sh). Its bin/ is put first on PATH
# for every recipe, so `python`, `hailong`, `lint-imports` and the tests' subprocesses
# (sys.executable) are the venv's, never a pyenv or system interpreter.
SYSTEM_PYTHON ?= /usr/bin/python3
VENV ?= .venv
PYTEST_ARGS ?=

VENV_ABS := $(abspath $(VENV))
PYTHON := $(VENV_ABS)/bin/python
export PATH := $(VENV_ABS)/bin:$(PATH)
export VIRTUAL_ENV := $(VENV_ABS)
# a PYTHONPATH or PYTHONHOME from the caller's shell must not pull in another interpreter's packages
unexport PYTHONHOME

# The venv is (re)filled when pyproject.toml changes; the stamp records the last install.
STAMP := $(VENV)/.hailong-installed

.PHONY: demo test test-fast setup setup-test system-deps system-deps-test venv js lint typecheck layers bench schema config-reference clean distclean

# Set-up prints one line per step (apt's and pip's output go to .hailong/*.log, their tail on failure).
# The demo gets what the demo runs; the tests also get the servers and tools only tests use
# (PostgreSQL, MariaDB, Xvfb, ...): the lists are in scripts/install-system-deps.sh.
setup: system-deps $(STAMP)

setup-test: system-deps-test $(STAMP)

system-deps:
	@bash scripts/install-system-deps.sh demo

system-deps-test:
	@bash scripts/install-system-deps.sh test

$(PYTHON):
	@echo "project virtual environment: $(SYSTEM_PYTHON) -m venv $(VENV)"
	@$(SYSTEM_PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PYTHON)
	@mkdir -p .hailong
	@echo "python packages: pip install -e '.[dev]' into $(VENV) (log: .hailong/pip.log)"
	@$(PYTHON) -m pip install --disable-pip-version-check -e '.[dev]' >.hailong/pip.log 2>&1 \
	  || { rc=$$?; echo "pip install failed (exit $$rc); last 25 lines of .hailong/pip.log:" >&2; \
	       tail -n 25 .hailong/pip.log >&2; exit $$rc; }
	@touch $(STAMP)

venv: $(STAMP)

## Grafana's frontend code the dashboard tests run (@grafana/data, pinned by package-lock.json)
JS_DIR := tests/dashboards/grafana_js
$(JS_DIR)/node_modules/.package-lock.json: $(JS_DIR)/package-lock.json
	@echo "grafana frontend packages: npm ci in $(JS_DIR) (log: .hailong/npm.log)"
	@mkdir -p .hailong
	@cd $(JS_DIR) && npm ci --no-audit --no-fund >$(CURDIR)/.hailong/npm.log 2>&1 \
	  || { rc=$$?; echo "npm ci failed (exit $$rc); last 25 lines of .hailong/npm.log:" >&2; \
	       tail -n 25 $(CURDIR)/.hailong/npm.log >&2; exit $$rc; }
	@touch $@

js: $(JS_DIR)/node_modules/.package-lock.json

## the whole system locally: broker, InfluxDB, ingest, simulated counters (state in .hailong/)
demo: setup
	@$(PYTHON) -m hailong.cli demo $(DEMO_ARGS)

## the whole test suite against real Mosquitto and InfluxDB (Kivy under Xvfb)
# pytest exits 5 when it collected no test: reported, and make fails (never a silent green)
test: setup-test js
	$(PYTHON) -c 'import sys; print("tests run with", sys.executable, "(base", sys.base_prefix + ")")'
	$(PYTHON) -m pytest $(PYTEST_ARGS) || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no test" >&2; exit $$rc; }

## the in-process layer only (no servers): judge, ticket index, clock, batch writer, MQTT codec; seconds
test-fast: $(STAMP)
	$(PYTHON) -m pytest -m fast -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(PYTHON) -m ruff check broker storage device ingest qms_bridge national web dashboards firmware_config federation hailong tests bench

typecheck: $(STAMP)
	$(PYTHON) -m mypy

layers: $(STAMP)
	$(VENV_ABS)/bin/lint-imports

## docs/configuration.md from the settings models (tests/test_config_reference.py checks it is current)
config-reference: $(STAMP)
	$(VENV_ABS)/bin/hailong config reference --out docs/configuration.md

schema: $(STAMP)
	$(PYTHON) -m hailong.cli contract schema --out docs/schemas

clean:
	rm -rf .hailong tests/artifacts .pytest_cache .mypy_cache .ruff_cache $(JS_DIR)/node_modules

distclean: clean
	rm -rf $(VENV)
