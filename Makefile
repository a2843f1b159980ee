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

# The test bed (hack/testbed/): a local control plane built from the published Go modules.
# `make test K8S_VERSION=1.34.4` runs the suite against another release (1.34 is the oldest supported).
K8S_VERSION ?= 1.37.2
export K8S_VERSION
TESTBED := hack/testbed
# State dirs (git-ignored): one for `make test` (fresh each run), one for humans (`make testbed-up`).
TESTBED_TEST_STATE ?= $(CURDIR)/.cache/testbed/test
TESTBED_DEV_STATE ?= $(CURDIR)/.cache/testbed/dev

.PHONY: help test tools preflight fmt fmt-check lint clippy nextest bench demo demo-down \
	testbed testbed-up testbed-down testbed-smoke

help:
	@echo 'make test    the whole suite: tools, test bed, fmt --check, clippy -D warnings, one control plane + nextest (root, /dev/fuse)'
	@echo 'make tools   install the pinned test tools into $(CRYPTOPASS_CACHE) (cargo-nextest, docutils, mdevctl)'
	@echo 'make testbed build or restore the control-plane binaries, KubeVirt CRDs and virt-controller (K8S_VERSION=$(K8S_VERSION))'
	@echo 'make testbed-up / testbed-down   a local control plane for you, in $(TESTBED_DEV_STATE)'
	@echo 'make fmt     format the code'
	@echo 'make lint    cargo fmt --check and cargo clippy --all-targets -- -D warnings'
	@echo 'make bench   cargo bench'
	@echo 'make demo    a local control plane, three simulated s390x nodes, the operator and a sample passthrough'
	@echo 'make demo-down   stop the demo and unmount its simulators'

# Order: tools, the test bed's binaries, fmt, clippy; then one control plane for the whole suite.
test: preflight tools testbed fmt-check clippy nextest

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
	cargo clippy --all-targets -- -D warnings  # benches are compiled and linted here; `make bench` runs them

lint: fmt-check clippy

# One control plane, shared by every test (tests isolate themselves by namespace and names), in a
# fresh state dir; stopped by the trap on success, failure and Ctrl-C.
nextest: tools testbed
	@state='$(TESTBED_TEST_STATE)'; \
	trap 'bash $(TESTBED)/down.sh "$$state"' EXIT; trap 'exit 130' INT TERM HUP; \
	bash $(TESTBED)/down.sh "$$state" >/dev/null; \
	bash $(TESTBED)/up.sh "$$state"; \
	source "$$state/env"; \
	bash $(TESTBED)/smoke.sh "$$state"; \
	echo "nextest: CRYPTOPASS_TEST_KUBECONFIG=$$CRYPTOPASS_TEST_KUBECONFIG (Kubernetes $$CRYPTOPASS_K8S_VERSION)"; \
	$(NEXTEST) run --lib --bins --tests --profile $(NEXTEST_PROFILE)

# Build (or restore from $(CRYPTOPASS_CACHE)) etcd, kube-apiserver/-scheduler/-controller-manager,
# kubectl, the KubeVirt CRDs and KubeVirt's virt-controller (with its RBAC) of K8S_VERSION.
testbed:
	bash $(TESTBED)/build.sh

testbed-up: testbed
	bash $(TESTBED)/up.sh '$(TESTBED_DEV_STATE)'
	bash $(TESTBED)/smoke.sh '$(TESTBED_DEV_STATE)'
	@echo 'make testbed-up: now run   source $(TESTBED_DEV_STATE)/env   (kubectl, KUBECONFIG); stop it with make testbed-down'

testbed-down:
	bash $(TESTBED)/down.sh '$(TESTBED_DEV_STATE)'

testbed-smoke:
	bash $(TESTBED)/smoke.sh '$(TESTBED_DEV_STATE)'

bench:
	cargo bench

# A local control plane, three simulated s390x nodes with their agents, the controller and a sample
# VM + passthrough; it leaves everything running (hack/demo.sh).
demo:
	bash hack/demo.sh

# Stops the demo's controller, agents and simulators, unmounts, and stops its control plane.
demo-down:
	bash hack/demo-down.sh
