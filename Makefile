# pdm-agent: `make run` starts the agent on the simulated machine; `make test` runs every test.
# Both work on a fresh Debian/Ubuntu machine with git and Python >= 3.10.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test venv install-mosquitto install-systemd-tools install uninstall check clean

run: $(VENV)/.installed
	$(BIN)/pdm-agent run --config config.yaml

test: $(VENV)/.installed-test install-mosquitto install-systemd-tools
	PATH="$$PATH:/usr/sbin:/sbin" $(BIN)/python -m pytest -n 4 --dist loadfile --durations=15

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

# The unit-file tests need systemd-analyze (package systemd; in a container that is just the
# binaries) and python3-seccomp (to run the agent inside the unit's syscall filter).
install-systemd-tools:
	@if command -v systemd-analyze >/dev/null 2>&1 && /usr/bin/python3 -c 'import seccomp' 2>/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing systemd-analyze and python3-seccomp (unit file tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd python3-seccomp; \
	else \
	  echo "error: the unit file tests need: sudo apt-get install systemd python3-seccomp" >&2; exit 1; \
	fi

# As a service on this machine: venv in /opt/pdm-agent, config in /etc/pdm-agent (see systemd/README.md).
install:
	sh systemd/install.sh

uninstall:
	sh systemd/uninstall.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
