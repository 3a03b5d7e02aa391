#!/usr/bin/env bash
# The local real Kubernetes cluster for kubevigil's scenario tests (no Docker needed).
#
#   bash scripts/cluster.sh up      # build what is needed, boot (or reuse) the cluster;
#                                   # the last stdout line is the kubeconfig path
#   bash scripts/cluster.sh down    # stop every process of it (control plane, kubelet, pods)
#   bash scripts/cluster.sh status  # show the processes and whether /readyz is ok
#
#   export KUBECONFIG="$(bash scripts/cluster.sh up | tail -n1)"
#
# `up` builds the control-plane binary (kind-tests/controlplane/build.sh, cached; a cold build
# takes 10 to 15 minutes), the Rust binaries (local-cluster and probe, then `cargo build --bins`
# for controller and scan-job; the kubelet maps images to them) and runs `local-cluster up`.
# State, logs and the kubeconfig live in ${KUBEVIGIL_CLUSTER_DIR:-$HOME/.cache/kubevigil/cluster}.
# Everything listens on 127.0.0.1 only.
#
# KUBEVIGIL_BIN_PROFILE=release builds everything with --release and runs target/release's
# local-cluster, so its kubelet maps the controller, scan-job and probe images to target/release
# (benchmarks; `make bench` sets it). The mapping is fixed when the cluster boots: run `down`
# first to switch a running cluster to the other profile.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

usage() {
  echo "usage: $0 up|down|status" >&2
  exit 2
}

profile="${KUBEVIGIL_BIN_PROFILE:-debug}"
case "${profile}" in
  debug) cargo_profile=() ;;
  release) cargo_profile=(--release) ;;
  *)
    echo "cluster.sh: KUBEVIGIL_BIN_PROFILE must be debug or release, not ${profile}" >&2
    exit 2
    ;;
esac

# Cargo's target directory (honours CARGO_TARGET_DIR), then the profile directory.
target_dir() {
  printf '%s/%s\n' "${CARGO_TARGET_DIR:-${root}/target}" "${profile}"
}

local_cluster() {
  local bin
  bin="$(target_dir)/local-cluster"
  if [[ ! -x "${bin}" ]]; then
    echo "cluster.sh: building local-cluster" >&2
    cargo build --quiet "${cargo_profile[@]}" -p kind-tests --bin local-cluster >&2
  fi
  "${bin}" "$@"
}

[[ $# -eq 1 ]] || usage
case "$1" in
  up)
    echo "cluster.sh: building the control-plane binary (cached)" >&2
    controlplane="$(bash kind-tests/controlplane/build.sh)"
    echo "cluster.sh: building local-cluster and probe" >&2
    cargo build --quiet "${cargo_profile[@]}" -p kind-tests --bins >&2
    # The controller and scan-job binaries are what the kubelet runs for kubevigil's images. The
    # cluster boots without them, so a build failure is reported loudly but does not stop `up`.
    echo "cluster.sh: building the workspace binaries (cargo build ${cargo_profile[*]} --bins)" >&2
    if ! cargo build --quiet "${cargo_profile[@]}" --bins >&2; then
      echo "cluster.sh: WARNING: cargo build --bins failed (output above); pods with the" \
        "controller or scan-job image will run an older binary or fail with ImageNotMapped" >&2
    fi
    KUBEVIGIL_CONTROLPLANE_BIN="${controlplane}" "$(target_dir)/local-cluster" up
    ;;
  down)
    local_cluster down
    ;;
  status)
    local_cluster status
    ;;
  *)
    usage
    ;;
esac
