# The two commands a newcomer runs: `make run` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEBS := docker-registry apache2-utils wrk
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint typecheck unit bench fuzz system-deps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Debian packages the tests and benchmarks use (a real Docker Registry, htpasswd, wrk).
system-deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

run: $(STAMP)
	$(BIN)/spacegate serve

lint: $(STAMP)
	$(BIN)/ruff check policy webhook certs tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) system-deps
	$(BIN)/pytest -q

test: $(STAMP) system-deps
	$(BIN)/ruff check policy webhook certs tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: $(STAMP) system-deps
	$(BIN)/python bench/decide.py
	$(BIN)/python bench/refresh.py
	$(BIN)/python bench/admission.py
	$(BIN)/python bench/abuse.py

# The property-based fuzz of /validate and /mutate, longer than the bounded run in `make test`.
fuzz: $(STAMP)
	SPACEGATE_FUZZ_EXAMPLES=5000 $(BIN)/pytest -q -p no:logging tests/webhook/test_fuzz.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
