# The two commands a newcomer runs: `make run` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEBS := docker-registry apache2-utils wrk chromium chromium-driver haproxy
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint typecheck deadcode unit bench fuzz system-deps clean controlplane crds

# What ruff checks and formats.
PY_SOURCES := policy webhook certs tests bench vulture_whitelist.py

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Debian packages the tests and benchmarks use (a real Docker Registry, htpasswd, wrk, and
# headless Chromium with its driver for the image selector's browser tests).
system-deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# etcd, kube-apiserver and kube-controller-manager for tests/e2e, built from the Go modules pinned in
# tests/support/controlplane/{kube,etcd}/go.mod into ~/.cache/spacegate/controlplane/<k8s>-<etcd>/
# (override: SPACEGATE_CONTROLPLANE_CACHE). Needs Go >= 1.26: about 8 minutes on 2 cores the first
# time, instant once built. SPACEGATE_SKIP_E2E=1 skips the build and the e2e tests.
controlplane: $(STAMP)
	@if [ "$$SPACEGATE_SKIP_E2E" = 1 ]; then echo "SPACEGATE_SKIP_E2E=1: not building the e2e control plane"; \
	else $(BIN)/python -m tests.support.controlplane.build; fi
	@# The Go oracle of the reference and keyring tests (upstream code); skipped without go.
	@if command -v go >/dev/null || [ -x /usr/local/go/bin/go ]; then $(BIN)/python -m tests.oracle >/dev/null; fi

run: $(STAMP)
	$(BIN)/spacegate serve

# The chart's RegistrySpaceBinding CRD, written from its one source (policy/binding_crd.py);
# tests/policy/test_binding_crd.py fails when the two disagree.
crds: $(STAMP)
	$(BIN)/spacegate bindings crd -o charts/spacegate/crds/registryspacebindings.spacegate.io.yaml

# Style, formatting, the import contracts, types and dead code.
lint: $(STAMP)
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/vulture

typecheck: $(STAMP)
	$(BIN)/mypy

# Code nothing in policy/, webhook/ or certs/ uses (configured in pyproject.toml [tool.vulture];
# names only a framework calls are in vulture_whitelist.py, each saying why).
deadcode: $(STAMP)
	$(BIN)/vulture

unit: $(STAMP) system-deps controlplane
	$(BIN)/pytest -q

# Two workers: the e2e tests run in order on one (one control plane), the rest on the other.
test: lint system-deps controlplane
	$(BIN)/pytest -q -n 2 --dist loadgroup

# Every benchmark in bench/ (bare_app.py is the admission benchmark's ceiling server, wrk/ its
# load scripts). apiserver, provision, audit, selector and bindings run on the e2e control plane
# that `controlplane` builds; with SPACEGATE_SKIP_E2E=1 they are skipped, saying so.
CONTROLPLANE_BENCHMARKS := apiserver provision audit selector bindings chaos
bench: $(STAMP) system-deps controlplane
	$(BIN)/python bench/decide.py
	$(BIN)/python bench/refresh.py
	$(BIN)/python bench/admission.py
	$(BIN)/python bench/abuse.py
	$(BIN)/python bench/last_known_good.py
	@if [ "$$SPACEGATE_SKIP_E2E" = 1 ]; then \
	  echo "SPACEGATE_SKIP_E2E=1: skipping the benchmarks on the e2e control plane: $(CONTROLPLANE_BENCHMARKS)"; \
	else \
	  set -e; for name in $(CONTROLPLANE_BENCHMARKS); do \
	    echo "$(BIN)/python bench/$$name.py"; $(BIN)/python bench/$$name.py; \
	  done; \
	fi

# The property-based fuzz of /validate and /mutate, and the host-spelling properties, longer
# than the bounded runs in `make test`.
fuzz: $(STAMP)
	SPACEGATE_FUZZ_EXAMPLES=5000 $(BIN)/pytest -q -p no:logging tests/webhook/admission/test_fuzz.py
	SPACEGATE_FUZZ_EXAMPLES=5000 $(BIN)/pytest -q -p no:logging tests/policy/test_host_identity.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
