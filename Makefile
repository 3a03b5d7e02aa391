# kubevigil: every developer and CI entry point. `make help` lists the targets.
#
#   make test   — everything CI runs, from a fresh machine (installs its own tools).
#   make demo   — a local real cluster with kubevigil installed by Helm and a demo namespace.
#   make bench  — the cluster benchmark (prints figures; not part of `make test`).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
SHARED ?= $(abspath ../shared)
# Where cargo puts binaries (CI points CARGO_TARGET_DIR at a cache shared between runs).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: test
test: ## Every check and test (what CI runs): lint, deny, generated files, chart, unit, conformance, scenarios
	bash scripts/test.sh

.PHONY: fmt-check
fmt-check: ## cargo fmt --check
	$(CARGO) fmt --all --check

.PHONY: clippy
clippy: ## cargo clippy on every target, warnings are errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Advisories come from the RustSec snapshot in $(SHARED)/advisory-db (no network for it here):
# scripts/advisory-db.sh clones it where deny.toml's db-path points, and cargo-deny runs offline
# (cargo fetch first: cargo metadata needs every platform's crates, from crates.io).
.PHONY: deny
deny: ## cargo deny, offline: advisories (RustSec snapshot in SHARED), licenses, bans, sources
	bash scripts/cargo-tool.sh cargo-deny 0.20.2 deny
	bash scripts/advisory-db.sh $(SHARED)/advisory-db/advisory-db.bundle
	$(CARGO) fetch --locked --quiet
	$(CARGO) deny --offline --log-level error check

.PHONY: crds
crds: ## Regenerate the chart's CRD files from the Rust types
	$(CARGO) run -q -p kubevigil-crds --bin crdgen

.PHONY: crds-check
crds-check: crds ## Fail when the committed CRD files differ from the Rust types
	@git diff --exit-code -- charts/kubevigil/crds || { echo "CRD files are out of date: run 'make crds' and commit them" >&2; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard charts/kubevigil/crds)" || { echo "untracked CRD files: run 'make crds' and commit them" >&2; exit 1; }

.PHONY: rules-check
rules-check: ## promtool check rules and promtool test rules on the chart's alerting rules
	bash scripts/rules-check.sh

.PHONY: chart-check
chart-check: ## helm lint and helm template of the chart, including rejected values
	bash scripts/chart-check.sh

.PHONY: unit
unit: ## Unit and engine tests (no cluster)
	$(CARGO) test --workspace --exclude kind-tests

.PHONY: conformance
conformance: ## Kubescape's rule fixtures against the offline scanner (>= 95% each way)
	$(CARGO) build -q -p scan-job --bin scan-job
	$(SHARED)/conformance/run $(TARGET_DIR)/debug/scan-job --min-pass 0.95

# Container images (images/Containerfile), daemonless with buildah: static binaries, one OCI
# archive per image in $(TARGET_DIR)/images/<name>.oci.tar (reference ghcr.io/kubevigil/<name>:
# <appVersion>), a CycloneDX SBOM next to each. IMAGES names them (default: the product's two).
IMAGES ?= controller scan-job
.PHONY: images
images: ## Static binaries + OCI image archives + SBOMs in target/images/ (buildah, no daemon); prints digests
	bash scripts/images.sh $(IMAGES)

.PHONY: images-check
images-check: ## Build each image twice (fresh buildah storage, fresh binary copies): fails when a digest differs
	bash scripts/images-reproducible.sh $(IMAGES)

# actionlint from the Go module proxy, cached under ~/.cache/kubevigil/tools.
ACTIONLINT_VERSION ?= v1.7.12
.PHONY: workflow-lint
workflow-lint: ## actionlint on .github/workflows/ (installed with go install, cached)
	bash scripts/workflow-lint.sh $(ACTIONLINT_VERSION)

.PHONY: cluster-up
cluster-up: ## Boot the local real control plane and node (kubelet, containerd, runc); prints the kubeconfig path
	bash scripts/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop the local cluster, leaving no process or port behind
	bash scripts/cluster.sh down

.PHONY: scenarios
scenarios: ## Scenario tests on the local real cluster (boots it when KUBECONFIG is unset)
	# The user journey runs the offline scanner on the chart (its self-scan).
	$(CARGO) build -q -p scan-job --bin scan-job
	$(CARGO) test -p kind-tests -- --test-threads=2

.PHONY: bench
bench: ## Cluster benchmark with release binaries on a fresh local cluster; prints figures (BENCHMARKS.md)
	bash scripts/bench.sh $(BENCH_ARGS)

.PHONY: bench-engine
bench-engine: ## The control engine's criterion benchmark on one core (BENCHMARKS.md); prints figures
	taskset -c 0 $(CARGO) bench -p kubevigil-engine --bench engine

.PHONY: demo
demo: ## Local cluster + kubevigil installed by Helm + a scanned demo namespace
	bash scripts/demo.sh

# cargo-fuzz needs nightly flags: the nightly toolchain when installed, else stable with
# RUSTC_BOOTSTRAP=1. Built into target/fuzz (sanitizer builds cannot share target/debug).
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= manifests engine names
.PHONY: fuzz
fuzz: ## cargo-fuzz: each target (manifest parser, engine, names) for FUZZ_SECONDS (600), one at a time; not in `make test`
	bash scripts/cargo-tool.sh cargo-fuzz 0.13.1 fuzz
	if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then fuzz="$(CARGO) +nightly fuzz"; \
	  else fuzz="env RUSTC_BOOTSTRAP=1 $(CARGO) fuzz"; fi; \
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz target $$t for $(FUZZ_SECONDS)s"; \
	  $$fuzz run --target-dir $(TARGET_DIR)/fuzz $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 || exit 1; \
	done

# A cluster of its own, booted with a low in-flight limit so that the API server answers 429.
PRESSURE_CLUSTER_DIR ?= $(HOME)/.cache/kubevigil/cluster-pressure
.PHONY: api-pressure
api-pressure: ## The scan pipeline on a cluster whose API server answers 429 (own cluster dir, --max-requests-inflight=2)
	export KUBEVIGIL_CLUSTER_DIR=$(PRESSURE_CLUSTER_DIR) \
	  KUBEVIGIL_APISERVER_EXTRA_ARGS="--max-requests-inflight=2 --max-mutating-requests-inflight=1"; \
	  trap 'bash scripts/cluster.sh down' EXIT; \
	  export KUBECONFIG="$$(bash scripts/cluster.sh up | tail -n1)"; \
	  $(CARGO) test -p kind-tests --test api_pressure -- --ignored --nocapture

# The chaos scenario (issue 8), once per seed, one seed after another, on a cluster of its own
# (it restarts that cluster's kube-apiserver). Each seed prints its operation counts, the faults
# injected and the invariant counts.
CHAOS_CLUSTER_DIR ?= $(HOME)/.cache/kubevigil/cluster-chaos
SEEDS ?= 1 2 3
CHAOS_OPS ?= 300
.PHONY: chaos
chaos: ## Chaos scenario for each of SEEDS ("1 2 3"): ~300 ops, controller kills, API server restart, killed scan pods and Jobs; then the convergence invariant
	export KUBEVIGIL_CLUSTER_DIR=$(CHAOS_CLUSTER_DIR); \
	  trap 'bash scripts/cluster.sh down' EXIT; \
	  export KUBECONFIG="$$(bash scripts/cluster.sh up | tail -n1)"; \
	  for seed in $(SEEDS); do \
	    echo "==> chaos seed $$seed ($(CHAOS_OPS) operations)"; \
	    KUBEVIGIL_CHAOS_SEED=$$seed KUBEVIGIL_CHAOS_OPS=$(CHAOS_OPS) \
	      $(CARGO) test -p kind-tests --test chaos -- --ignored --nocapture || exit 1; \
	  done
