# hailong: the two commands of the README, and helpers.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: demo test setup lint typecheck bench schema clean

setup:
	bash scripts/install-system-deps.sh
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev]'

## the whole system locally: broker, InfluxDB, ingest, simulated counters (state in .hailong/)
demo: setup
	$(PYTHON) -m hailong.cli demo $(DEMO_ARGS)

## the whole test suite against real Mosquitto and InfluxDB (Kivy under Xvfb)
test: setup
	$(PYTHON) -m pytest $(PYTEST_ARGS)

lint:
	$(PYTHON) -m ruff check broker device ingest dashboards firmware_config hailong tests bench

typecheck:
	$(PYTHON) -m mypy

schema:
	$(PYTHON) -m hailong.cli contract schema --out docs/schemas

clean:
	rm -rf .hailong tests/artifacts .pytest_cache .mypy_cache .ruff_cache
