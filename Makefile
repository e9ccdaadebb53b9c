# Two entry points on a fresh Debian machine with Python 3.11:
#   make run   - create .venv, install, start the built-in demo site
#   make test  - create .venv, install with test extras, lint, type-check, test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint typecheck pytest bench clean mosquitto bytecode

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

# edge is installed editable, so pip compiles none of it. Where PYTHONDONTWRITEBYTECODE
# is set (some images set it), every start would compile every module again: about an
# eighth of the daemon's start-up. compileall writes what is missing or stale.
bytecode: $(VENV)/.installed
	$(BIN)/python -m compileall -q edge

run: $(VENV)/.installed bytecode
	$(BIN)/edge demo

# The uplink tests start a real mosquitto; install it when we can.
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq mosquitto; \
	    else echo "mosquitto missing (apt-get install mosquitto); MQTT tests will be skipped"; fi; }

LINTED := edge tests $(wildcard bench)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check --no-cache $(LINTED)
	$(BIN)/ruff format --no-cache --check $(LINTED)

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

pytest: $(VENV)/.installed-test
	$(BIN)/pytest -q -p no:cacheprovider

test: mosquitto lint typecheck pytest

bench: $(VENV)/.installed-test bytecode
	$(BIN)/python bench/ocpp_throughput.py
	$(BIN)/python bench/modbus_poll.py
	$(BIN)/python bench/load_balancing.py
	$(BIN)/python bench/uplink_replay.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
