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

.PHONY: deps images build test lint lab lab-down bench

# System packages (containerd, runc, CNI plugins, registry, …) when missing, and a
# running containerd.
deps:
	scripts/deps.sh

# The test images in a local registry on 127.0.0.1:5000 and as OCI archives
# (tests/images/build.sh says which); the kubelet tests also run it themselves.
images: deps
	tests/images/build.sh

build:
	$(CARGO) build --release --workspace --bins

# One release build serves the binaries and the tests; --no-fail-fast so that the
# closing summary counts every test.
test: deps images
	$(MAKE) build
	$(CARGO) nextest run --workspace --release --no-fail-fast
	$(CARGO) fmt --all --check

# Lints, kept out of `make test`: a clean clippy run compiles every dependency a second
# time (check mode), which pushed CI toward its 30-minute budget.
lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lab: deps build
	lab/store-up.sh
	lab/apiserver-up.sh

lab-down:
	lab/store-down.sh

bench: build
	$(TARGET_DIR)/release/bench --skiff-binary $(SKIFF_BIN) $(BENCH_ARGS)
