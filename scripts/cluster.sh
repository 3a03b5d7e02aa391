#!/usr/bin/env bash
# The local real Kubernetes cluster for kubevigil's scenario tests (no Docker needed): the control
# plane and a real node (containerd, runc, the CNI bridge, kubelet and kube-proxy) that runs
# kubevigil's own images.
#
#   bash scripts/cluster.sh up           # build what is needed, boot (or reuse) the cluster;
#                                        # the last stdout line is the kubeconfig path
#   bash scripts/cluster.sh down         # drain the node, stop every process, restore the host
#   bash scripts/cluster.sh status       # show the processes and whether /readyz is ok
#   bash scripts/cluster.sh check-clean  # after down: fail if anything of the cluster is left
#
#   export KUBECONFIG="$(bash scripts/cluster.sh up | tail -n1)"
#
# `up` builds the Kubernetes binary (kind-tests/controlplane/build.sh, cached; a cold build
# takes 10 to 15 minutes), local-cluster, and kubevigil's images (scripts/images.sh: static
# release binaries, then OCI archives; cached), installs the node's Debian packages when missing
# (containerd, runc, CNI plugins, iptables), and runs `local-cluster up`, which imports the images
# under the chart's default references. State, logs and the kubeconfig live in
# ${KUBEVIGIL_CLUSTER_DIR:-$HOME/.cache/kubevigil/cluster}. The control plane listens on
# 127.0.0.1; pods live on the bridge kubevigil0 (10.244.0.0/24). One node runs on a machine at a
# time. Needs root (network, mounts, cgroups).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

usage() {
  echo "usage: $0 up|down|status|check-clean" >&2
  exit 2
}

# local-cluster itself (the images are always static release builds: scripts/images.sh).
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

# The node's packages from Debian (the machine's own apt sources).
node_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v ip >/dev/null || missing+=(iproute2)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ "$(id -u)" -eq 0 ]] || { echo "cluster.sh: the node needs root and ${missing[*]}" >&2; exit 1; }
  echo "cluster.sh: installing ${missing[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; }
}

[[ $# -eq 1 ]] || usage
case "$1" in
  up)
    node_packages
    echo "cluster.sh: building the Kubernetes binary (cached)" >&2
    controlplane="$(bash kind-tests/controlplane/build.sh)"
    echo "cluster.sh: building local-cluster" >&2
    cargo build --quiet "${cargo_profile[@]}" -p kind-tests --bin local-cluster >&2
    KUBEVIGIL_CONTROLPLANE_BIN="${controlplane}" "$(target_dir)/local-cluster" up
    ;;
  down)
    local_cluster down
    ;;
  status)
    local_cluster status
    ;;
  check-clean)
    local_cluster check-clean
    ;;
  *)
    usage
    ;;
esac
