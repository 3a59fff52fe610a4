# Entry points for building, testing, the local store lab and the bench.
# CI runs `make test` through .ci/run.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo

# Where cargo puts its output: $CARGO_TARGET_DIR when set, else what cargo says
# (it honours .cargo/config.toml), else ./target.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(shell $(CARGO) metadata --format-version 1 --no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'),$(CURDIR)/target)

# Integration tests, the bench and the lab find the daemon here: Cargo only tells a
# crate's own tests where its binaries are, and the tests live in another crate.
SKIFF_BIN ?= $(TARGET_DIR)/release/skiff
export SKIFF_BIN

BENCH_ARGS ?=

.PHONY: deps images build test lint lab lab-down store-lab store-lab-down bench

# System packages (containerd, runc, CNI plugins, registry, …) when missing, and a
# running containerd.
deps:
	scripts/deps.sh

# The test images in a local registry on 127.0.0.1:5000 and as OCI archives
# (tests/images/build.sh says which); the kubelet tests also run it themselves.
images: deps
	tests/images/build.sh

# The daemon and the client.
build:
	$(CARGO) build --release -p skiff -p skiffctl

# One cargo invocation builds the binaries and every test, so that both resolve the
# same features (a separate `cargo build --bins` would leave dev-dependencies' features
# out and nextest would rebuild half the graph); the benchmarks (skiff-bench) are left
# out, each being a release link of most of the workspace. --no-fail-fast so that the
# closing summary counts every test. The format check goes first: it takes seconds,
# and a slip found after the suite costs the whole run.
TEST_SCOPE := --workspace --exclude skiff-bench
test: deps images
	$(CARGO) fmt --all --check
	$(CARGO) build --release $(TEST_SCOPE) --bins --tests
	$(CARGO) nextest run --release $(TEST_SCOPE) --no-fail-fast

# Lints, kept out of `make test`: a clean clippy run compiles every dependency a second
# time (check mode), which pushed CI toward its 30-minute budget.
lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# A whole cluster on this machine (network namespaces as machines); see the README.
lab: images build
	$(TARGET_DIR)/release/skiffctl lab up --skiff-binary $(SKIFF_BIN)

lab-down:
	$(TARGET_DIR)/release/skiffctl lab down

# Three store members on loopback, nothing else.
store-lab: deps build
	lab/store-up.sh
	lab/apiserver-up.sh

store-lab-down:
	lab/store-down.sh

bench: build
	$(CARGO) build --release -p skiff-bench
	$(TARGET_DIR)/release/bench --skiff-binary $(SKIFF_BIN) $(BENCH_ARGS)
