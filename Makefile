# One-command setup: `make run` and `make test` work on a bare machine with Python 3.11 and Node/npm.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: all install tools checkov run check test unit faults lint bench clean

all: test

# The venv is rebuilt whenever a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	@echo "==> creating $(VENV) and installing Python packages"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar off --upgrade pip >/dev/null
	$(PY) -m pip install --progress-bar off -r requirements-dev.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	@echo "==> installing Azurite (npm ci)"
	npm ci --no-audit --no-fund
	@touch $@

# checkov (the IaC scanner for infra/) gets a venv of its own: its ~90 pinned dependencies
# (packaging<24, boto3, ...) would downgrade the app's. Rebuilt when requirements-tools.txt changes.
TOOLS_VENV := .venv-tools

$(TOOLS_VENV)/.installed: requirements-tools.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	@echo "==> creating $(TOOLS_VENV) (checkov)"
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --progress-bar off --upgrade pip >/dev/null
	$(TOOLS_VENV)/bin/python -m pip install --progress-bar off -r requirements-tools.txt
	@touch $@

install: $(VENV)/.installed node_modules/.installed

tools: $(TOOLS_VENV)/.installed

# The same scan tests/infra/test_checkov.py asserts on, with checkov's own report.
checkov: tools
	BC_SKIP_MAPPING=TRUE $(TOOLS_VENV)/bin/checkov --framework bicep --skip-download -d infra --compact

# Starts Azurite on free ports, runs pytest against it, stops Azurite by pid (also when tests fail)
# and exits with pytest's status.
test: install tools
	$(PY) -m devhost.azurite -- $(PY) -m pytest $(PYTEST_ARGS)

# The fast tier alone: pure rules and use cases with in-memory fakes; no Azurite, no sandbox, seconds.
unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The storage fault tests at full scale: 2,000 bookings synced, selected and invoiced through a proxy
# resetting 3 % of storage requests (about four minutes on two cores; `make test` runs them at 500).
faults: install
	FAULT_TEST_BOOKINGS=2000 $(PY) -m devhost.azurite -- $(PY) -m pytest tests/faults $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

# Runs the benchmarks (sync, selection, invoicing) and writes bench/RESULTS.md from their figures.
bench: install
	$(PY) -m devhost.azurite -- $(PY) -m bench.results

# `make run FAULTS=storage`: a proxy between the app and Azurite resets 3% of storage requests
# (FAULT_RATE=0.1 for more), delays some, and prints each fault.
run: install
	$(PY) -m devhost.run $(if $(PORT),--port $(PORT)) $(if $(SANDBOX_PORT),--sandbox-port $(SANDBOX_PORT)) $(if $(FAULTS),--faults $(FAULTS))

# The setup check from a terminal, before deploying: the checks of GET /api/setup-check against
# local.settings.json (or SETTINGS=path), each with its fix; exits 1 when a check failed.
check: $(VENV)/.installed
	$(PY) -m devhost.check $(if $(SETTINGS),--settings $(SETTINGS))

clean:
	rm -rf $(VENV) $(TOOLS_VENV) node_modules .pytest_cache .ruff_cache .devhost
