# pdm-agent: `make run` starts the agent on the simulated machine; `make test` runs every test.
# Both work on a fresh Debian/Ubuntu machine with git and Python >= 3.10.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test venv install-mosquitto check clean

run: $(VENV)/.installed
	$(BIN)/pdm-agent run --config config.yaml

test: $(VENV)/.installed-test install-mosquitto
	PATH="$$PATH:/usr/sbin:/sbin" $(BIN)/python -m pytest

check: $(VENV)/.installed
	$(BIN)/pdm-agent config check --config config.yaml

# Debian's python3 ships without venv/ensurepip; install it when we are allowed to.
$(VENV)/bin/python:
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv; \
	  else echo "error: Python's venv module is missing; install it: sudo apt-get install python3-venv" >&2; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/bin/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@ $(VENV)/.installed

install-mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing mosquitto (the tests start their own broker on a free port)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; \
	else \
	  echo "error: the tests need the Mosquitto broker; install it: sudo apt-get install mosquitto" >&2; exit 1; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
