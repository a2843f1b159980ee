# cryptopass — build, lint and test entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Tools are installed once per machine, pinned and cached by version (hack/tools.sh).
CRYPTOPASS_CACHE ?= $(HOME)/.cache/cryptopass
export CRYPTOPASS_CACHE
TOOLS_BIN := $(CRYPTOPASS_CACHE)/bin
NEXTEST := $(TOOLS_BIN)/cargo-nextest nextest
# Tests find the real mdevctl 1.4.0 here.
export CRYPTOPASS_MDEVCTL := $(TOOLS_BIN)/mdevctl
# nextest profile (.config/nextest.toml): `ci` under CI=true, else `default`.
NEXTEST_PROFILE ?= $(if $(CI),ci,default)

.PHONY: help test tools preflight fmt fmt-check lint clippy nextest bench demo

help:
	@echo 'make test    the whole suite: tools, fmt --check, clippy -D warnings, nextest (needs root and /dev/fuse)'
	@echo 'make tools   install the pinned test tools into $(CRYPTOPASS_CACHE) (cargo-nextest, docutils, mdevctl)'
	@echo 'make fmt     format the code'
	@echo 'make lint    cargo fmt --check and cargo clippy --all-targets -- -D warnings'
	@echo 'make bench   cargo bench'
	@echo 'make demo    the end-to-end demo (arrives with the Kubernetes layer)'

test: preflight tools fmt-check clippy nextest

# The tests mount simulated sysfs trees with FUSE: that needs root and /dev/fuse.
preflight:
	@if [[ $$(id -u) -ne 0 ]]; then \
	    echo 'make test: must run as root (the tests mount simulated sysfs trees with FUSE)' >&2; exit 1; fi
	@if [[ ! -c /dev/fuse ]]; then \
	    echo 'make test: /dev/fuse is missing (load the fuse module, or give the container --device /dev/fuse)' >&2; exit 1; fi
	@if ! : 2>/dev/null <>/dev/fuse; then \
	    echo 'make test: /dev/fuse exists but cannot be opened read-write' >&2; exit 1; fi

tools:
	bash hack/tools.sh

fmt:
	cargo fmt --all

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --all-targets -- -D warnings

lint: fmt-check clippy

nextest: tools
	$(NEXTEST) run --all-targets --profile $(NEXTEST_PROFILE)

bench:
	cargo bench

demo:
	@echo 'make demo: the demo (a local control plane with simulated s390x nodes, the operator, a sample'
	@echo 'passthrough and a migration gate) arrives with the Kubernetes layer. Today: the offline tools,'
	@echo 'see README.md ("Offline tools").'
