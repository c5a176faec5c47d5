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

# First interpreter >= 3.11 found on PATH (override: make install PYTHON=/path/to/python3)
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && \
	{ echo $$p; break; }; done)

# Real SIP peers used by the integration tests (Debian packages and the binaries they give)
PEER_BINS := sipp baresip espeak-ng sox
PEER_PKGS := sip-tester baresip-core espeak-ng sox
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

DATA_DIR := ./data
ADMIN_PASSWORD_FILE := $(DATA_DIR)/admin-password
ARGS ?=

.PHONY: help install run test lint peers bench clean

help:
	@echo "make install  create $(VENV) (Python >= 3.11) and install pypbx with its runtime deps"
	@echo "make run      install if needed, then run the PBX with state in $(DATA_DIR) (ARGS=... for more flags)"
	@echo "make test     install test deps and SIP peers if missing, lint, type-check, run all tests"
	@echo "make lint     ruff check, ruff format --check, mypy"
	@echo "make bench    run the benchmarks in bench/ (not part of make test)"
	@echo "make clean    remove caches and build output (keeps $(VENV) and $(DATA_DIR))"

$(BIN)/python:
	@if [ -z "$(PYTHON)" ]; then echo "error: pypbx needs Python >= 3.11 on PATH (or PYTHON=...)" >&2; exit 1; fi
	$(PYTHON) -m venv $(VENV)

$(INSTALL_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(TEST_STAMP): pyproject.toml $(INSTALL_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

install: $(INSTALL_STAMP)

run: $(INSTALL_STAMP)
	@mkdir -p $(DATA_DIR)
	@if [ ! -s $(ADMIN_PASSWORD_FILE) ]; then \
		if [ -e $(DATA_DIR)/pypbx.sqlite3 ]; then \
			echo "note: $(DATA_DIR) already holds a database; its admin password was set when it was created"; \
		fi; \
		umask 077; $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(12))' > $(ADMIN_PASSWORD_FILE); \
	fi
	@echo "pypbx: SIP on port 5060 (UDP and TCP) of every interface"
	@echo "       HTTP API: http://127.0.0.1:7780/?command=ListActiveCalls&Username=admin&Password=..."
	@echo "       API user 'admin', password in $(ADMIN_PASSWORD_FILE) (used when $(DATA_DIR) is first created)"
	@echo "       try: curl \"http://127.0.0.1:7780/?command=ListActiveCalls&Username=admin&Password=\$$(cat $(ADMIN_PASSWORD_FILE))\""
	@echo "       stop with Ctrl-C"
	PYPBX_ADMIN_PASSWORD="$$(cat $(ADMIN_PASSWORD_FILE))" $(BIN)/pypbx serve --data-dir $(DATA_DIR) $(ARGS)

peers:
	@missing=""; for b in $(PEER_BINS); do command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing SIP test peers (missing:$$missing)"; \
		$(SUDO) apt-get -o DPkg::Lock::Timeout=600 update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
			install -y --no-install-recommends $(PEER_PKGS); \
	fi

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	MYPYPATH=tests $(BIN)/mypy --strict -p peers

# Integration tests take their ports from per-worker ranges, so they run in parallel.
test: $(TEST_STAMP) peers lint
	$(BIN)/pytest -n auto

bench: $(INSTALL_STAMP)
	@found=0; for f in bench/*.py; do [ -e "$$f" ] || continue; found=1; \
		echo "== $$f"; $(BIN)/python "$$f" || exit 1; done; \
	[ $$found = 1 ] || echo "no benchmarks in bench/ yet"

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
