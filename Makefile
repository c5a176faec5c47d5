# pypbx developer entry points. `make help` lists them.
#
# Installs are idempotent: stamp files inside .venv are keyed on pyproject.toml, so editing
# dependencies triggers a reinstall and nothing else does.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
INSTALL_STAMP := $(VENV)/.stamp-install
TEST_STAMP := $(VENV)/.stamp-test
COMPILE_STAMP := $(VENV)/.stamp-compiled
# The modules scripts/compile_core.py builds with mypyc: a change to any of them rebuilds.
COMPILED_SRCS := $(shell python3 scripts/compile_core.py --list 2>/dev/null)

# First interpreter >= 3.11 found on PATH (override: make install PYTHON=/path/to/python3)
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && \
	{ echo $$p; break; }; done)

# Real SIP peers used by the integration tests (Debian packages and the binaries they give),
# and PostgreSQL, which the store and end-to-end tests run on besides SQLite (a throwaway
# server started by scripts/run-tests.sh; PYPBX_TEST_NO_PG=1 skips installing and using it).
PEER_BINS := sipp baresip espeak-ng sox
PEER_PKGS := sip-tester baresip-core espeak-ng sox
PG_PKGS := $(if $(filter 1,$(PYPBX_TEST_NO_PG)),,postgresql)
APT_GET := apt-get -o DPkg::Lock::Timeout=600
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# pytest-xdist workers. Integration tests mostly wait on peers and timers, so more workers
# than cores pays off, and work stealing keeps one worker from finishing a queue of slow
# tests alone. On 2 cores: -n 4 --dist worksteal ~145 s, -n 2 (= auto) ~210 s.
PYTEST_WORKERS ?= 4
PYTEST_DIST ?= worksteal
PYTEST_ARGS ?=

DATA_DIR := ./data
ADMIN_PASSWORD_FILE := $(DATA_DIR)/admin-password
ARGS ?=

.PHONY: help install compile run test lint peers bench soak clean

help:
	@echo "make install  create $(VENV) (Python >= 3.11), install pypbx with its runtime deps and"
	@echo "              compile its SIP core with mypyc (PYPBX_COMPILE=0: run the sources only)"
	@echo "make compile  compile the SIP core (again, or after a build that failed or was skipped)"
	@echo "make run      install if needed, then run the PBX with state in $(DATA_DIR) (ARGS=... for more flags)"
	@echo "make test     install test deps, SIP peers and PostgreSQL if missing, lint, type-check,"
	@echo "              run all tests (SQLite and a throwaway PostgreSQL; PYPBX_TEST_NO_PG=1 skips it)"
	@echo "make lint     ruff check, ruff format --check, mypy"
	@echo "make bench    run the benchmarks in bench/ (not part of make test; installs Kamailio,"
	@echo "              Sippy, uvloop, py-spy for the reference runs: bench/setup.sh)"
	@echo "make soak     calls with media for 10 min, watching pypbx memory and descriptors"
	@echo "              (ARGS=\"--minutes N --rate R\")"
	@echo "make clean    remove caches, build output and compiled modules (keeps $(VENV) and $(DATA_DIR))"

$(BIN)/python:
	@if [ -z "$(PYTHON)" ]; then echo "error: pypbx needs Python >= 3.11 on PATH (or PYTHON=...)" >&2; exit 1; fi
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "error: could not create $(VENV) (on Debian: apt-get install python3-venv)" >&2; exit 1; }

$(INSTALL_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[compile]'
	@touch $@

$(TEST_STAMP): pyproject.toml $(INSTALL_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,compile]'
	@touch $@

# Compiled modules shadow their sources; pypbx runs the sources instead while any compiled
# module is older than its source (src/pypbx/core_build.py), so a failed build, or none,
# costs speed and nothing else.
$(COMPILE_STAMP): $(COMPILED_SRCS) scripts/compile_core.py $(INSTALL_STAMP)
	@if [ "$${PYPBX_COMPILE:-1}" = 0 ]; then \
		echo "PYPBX_COMPILE=0: the SIP core runs from its sources"; \
		$(BIN)/python scripts/compile_core.py --clean; \
	else \
		echo "compiling the SIP core with mypyc (about 2 minutes)"; \
		$(BIN)/python scripts/compile_core.py > $(VENV)/compile.log 2>&1 || { \
			tail -20 $(VENV)/compile.log; \
			echo "warning: could not compile the SIP core (a C compiler and the Python headers are"; \
			echo "         needed: apt-get install gcc python3-dev); it runs from its sources, slower."; \
			echo "         With them installed, \`make compile\` builds it."; \
			$(BIN)/python scripts/compile_core.py --clean; }; \
	fi
	@touch $@

install: $(INSTALL_STAMP) $(COMPILE_STAMP)

compile: $(INSTALL_STAMP)
	rm -f $(COMPILE_STAMP)
	$(MAKE) $(COMPILE_STAMP)

# A PYPBX_ADMIN_PASSWORD from the environment (or `make run PYPBX_ADMIN_PASSWORD=...`) wins;
# only without one is a password generated and kept in $(ADMIN_PASSWORD_FILE).
run: $(INSTALL_STAMP) $(COMPILE_STAMP)
	@mkdir -p $(DATA_DIR)
	@if [ -n "$${PYPBX_ADMIN_PASSWORD:-}" ]; then \
		if [ -e $(ADMIN_PASSWORD_FILE) ]; then \
			echo "note: $(ADMIN_PASSWORD_FILE) is ignored: PYPBX_ADMIN_PASSWORD is set"; \
		fi; \
		if [ -e $(DATA_DIR)/pypbx.sqlite3 ]; then \
			echo "note: $(DATA_DIR) already holds a database; its admin password was set when it was created"; \
		fi; \
	elif [ ! -s $(ADMIN_PASSWORD_FILE) ]; then \
		if [ -e $(DATA_DIR)/pypbx.sqlite3 ]; then \
			echo "note: $(DATA_DIR) already holds a database; its admin password was set when it was created"; \
		fi; \
		umask 077; $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(12))' > $(ADMIN_PASSWORD_FILE); \
	fi
	@echo "pypbx: SIP on port 5060 (UDP and TCP) of every interface"
	@echo "       HTTP API: http://127.0.0.1:7780/?command=ListActiveCalls&Username=admin&Password=..."
	@if [ -n "$${PYPBX_ADMIN_PASSWORD:-}" ]; then \
		echo "       API user 'admin', password from PYPBX_ADMIN_PASSWORD (nothing written to $(ADMIN_PASSWORD_FILE);"; \
		echo "       it is used when $(DATA_DIR) is first created)"; \
		echo "       try: curl \"http://127.0.0.1:7780/?command=ListActiveCalls&Username=admin&Password=\$$PYPBX_ADMIN_PASSWORD\""; \
	else \
		echo "       API user 'admin', password in $(ADMIN_PASSWORD_FILE) (used when $(DATA_DIR) is first created)"; \
		echo "       try: curl \"http://127.0.0.1:7780/?command=ListActiveCalls&Username=admin&Password=\$$(cat $(ADMIN_PASSWORD_FILE))\""; \
	fi
	@command -v espeak-ng >/dev/null 2>&1 || \
		echo "note: the Speak command needs espeak-ng (Debian: apt-get install espeak-ng)"
	@echo "       stop with Ctrl-C"
	PYPBX_ADMIN_PASSWORD="$${PYPBX_ADMIN_PASSWORD:-$$(cat $(ADMIN_PASSWORD_FILE))}" $(BIN)/pypbx serve --data-dir $(DATA_DIR) $(ARGS)

# One apt-get update and one install for whatever is missing; afterwards everything must be
# there, or this fails (CI must prove the tests ran with real peers and PostgreSQL).
# On a fresh Debian it also brings python3-venv, which is why `test` runs it before the venv.
peers:
	@missing=""; extra=""; \
	for b in $(PEER_BINS); do command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	if [ ! -x $(BIN)/python ] && ! { [ -n "$(PYTHON)" ] && $(PYTHON) -c 'import ensurepip' 2>/dev/null; }; then \
		missing="$$missing python3-venv"; extra="python3 python3-venv"; \
	fi; \
	if [ -n "$(PG_PKGS)" ] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then \
		missing="$$missing postgresql"; \
	fi; \
	if [ -n "$$missing" ]; then \
		echo "installing test peers (missing:$$missing)"; \
		$(SUDO) $(APT_GET) update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive $(APT_GET) \
			install -y --no-install-recommends $(PEER_PKGS) $(PG_PKGS) $$extra || \
			{ echo "error: could not install the test peers:$$missing" >&2; exit 1; }; \
		for b in $(PEER_BINS); do command -v $$b >/dev/null 2>&1 || \
			{ echo "error: $$b still missing after apt-get install" >&2; exit 1; }; done; \
		if [ -n "$(PG_PKGS)" ] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then \
			echo "error: no /usr/lib/postgresql/*/bin/initdb after installing postgresql" >&2; exit 1; \
		fi; \
	fi

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	MYPYPATH=tests $(BIN)/mypy --strict -p peers

# Peers first (on a fresh machine they bring python3-venv), then lint (make stops at the
# first failing step), then every test in parallel: integration tests take their ports from
# per-worker ranges. scripts/run-tests.sh owns the throwaway PostgreSQL server and stops it
# however pytest ends.
test: peers $(TEST_STAMP) $(COMPILE_STAMP) lint
	PYTEST=$(BIN)/pytest scripts/run-tests.sh -n $(PYTEST_WORKERS) --dist $(PYTEST_DIST) $(PYTEST_ARGS)
	@if $(BIN)/python -c 'import pypbx, sys; sys.exit(not pypbx.CORE.startswith("compiled"))'; then \
		echo "the SIP core's unit tests once more, on its sources (what runs when not compiled)"; \
		PYPBX_PURE_PYTHON=1 $(BIN)/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) \
			tests/unit/sip tests/unit/test_core_build.py; \
	fi

bench: peers $(INSTALL_STAMP) $(COMPILE_STAMP)
	bench/setup.sh
	@found=0; for f in bench/*.py; do [ -e "$$f" ] || continue; \
		case "$$f" in bench/soak.py) continue;; esac; found=1; \
		echo "== $$f"; $(BIN)/python "$$f" || exit 1; done; \
	[ $$found = 1 ] || echo "no benchmarks in bench/ yet"

soak: peers $(INSTALL_STAMP) $(COMPILE_STAMP)
	bench/setup.sh
	$(BIN)/python bench/soak.py $(ARGS)

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis $(COMPILE_STAMP)
	python3 scripts/compile_core.py --clean
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
