#!/usr/bin/env bash
# `make bench`: kubevigil's cluster benchmark, one command. Builds everything with --release,
# boots a fresh local cluster (own state directory) whose node runs kubevigil's images (release
# binaries, as always: scripts/images.sh), runs `kv-bench run`
# (every phase unless arguments say otherwise), prints the figures and writes them to
# target/bench/figures.md, then stops the cluster.
#
#   make bench                                        # all phases (about 40 minutes on 2 cores)
#   make bench BENCH_ARGS="--phases 2k,latency --edits 50"
#   bash scripts/bench.sh --idle-secs 60              # arguments go to `kv-bench run`
#
# It is not a test: it fails only when it cannot measure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
export KUBEVIGIL_CLUSTER_DIR="${KUBEVIGIL_CLUSTER_DIR:-${HOME}/.cache/kubevigil/cluster-bench}"
export KUBEVIGIL_BIN_PROFILE=release
release="${CARGO_TARGET_DIR:-${root}/target}/release"

echo "bench: building with --release" >&2
cargo build --quiet --release -p controller -p scan-job -p kind-tests --bins >&2
# Every run starts from a fresh cluster.
bash scripts/cluster.sh down >&2 || true
trap 'bash scripts/cluster.sh down >&2 || true' EXIT
KUBECONFIG="$(bash scripts/cluster.sh up | tail -n1)"
export KUBECONFIG
mkdir -p "${release}/../bench"
"${release}/kv-bench" run --scan-job-bin "${release}/scan-job" "$@" \
  | tee "${release}/../bench/figures.md"
