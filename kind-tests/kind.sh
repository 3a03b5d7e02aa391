#!/usr/bin/env bash
# kind-tests/kind.sh: kubevigil's scenario tests on a kind cluster, for machines WITH Docker.
#
# THIS SCRIPT CANNOT RUN ON THE PROJECT'S CI OR DEVELOPMENT MACHINES: they have no Docker engine
# and no container images. It has never been run there and no result of it is claimed. There,
# the same tests run against the local real control plane instead (scripts/cluster.sh, or just
# `cargo test -p kind-tests`, which boots it).
#
# What it does:
#   1. creates (or reuses) the kind cluster "${KIND_CLUSTER_NAME:-kubevigil}";
#   2. builds static binaries of controller, scan-job and kind-tests' probe (glibc, crt-static:
#      `bash scripts/images.sh --binaries-only`, the same binaries `make images` puts in its
#      images), and their images with `docker build --target <name>` from the one Containerfile
#      images/Containerfile (FROM scratch, the binary alone), each from a context directory that
#      holds only its binary, tagged kubevigil.local/<name>:${KUBEVIGIL_IMAGE_TAG:-dev};
#   3. loads them into the cluster with `kind load docker-image`;
#   4. installs the chart: helm upgrade --install kubevigil ./charts/kubevigil -n kubevigil
#      --create-namespace --set clusterName=kind --set capabilities.continuousScan=enable ...;
#   5. runs `cargo test -p kind-tests` with KUBECONFIG pointing at the kind cluster.
#
# Needs: docker with BuildKit (the default since Docker 23), kind, cargo, python3, and npm for
# scripts/tools.sh (kubectl and helm). No base image is pulled.
#
#   bash kind-tests/kind.sh            # everything
#   KEEP_CLUSTER=0 bash kind-tests/kind.sh   # delete the kind cluster afterwards
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

cluster="${KIND_CLUSTER_NAME:-kubevigil}"
tag="${KUBEVIGIL_IMAGE_TAG:-dev}"
registry="kubevigil.local"
images=(controller scan-job probe)

log() { printf 'kind.sh: %s\n' "$*" >&2; }
die() { printf 'kind.sh: error: %s\n' "$*" >&2; exit 1; }

for tool in docker kind cargo; do
  command -v "${tool}" >/dev/null 2>&1 || die "${tool} is required (this script is for machines with Docker)"
done
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable"

tools_dir="$(bash scripts/tools.sh)"
export PATH="${tools_dir}:${PATH}"

# 1. The cluster.
if kind get clusters 2>/dev/null | grep -qx "${cluster}"; then
  log "reusing kind cluster ${cluster}"
else
  log "creating kind cluster ${cluster}"
  kind create cluster --name "${cluster}" --wait 120s
fi
kubeconfig="$(mktemp -t "kind-${cluster}.XXXXXX.kubeconfig")"
trap 'rm -f "${kubeconfig}"' EXIT
kind get kubeconfig --name "${cluster}" >"${kubeconfig}"

# 2. Static binaries and images.
log "building static binaries of ${images[*]} (scripts/images.sh --binaries-only)"
binaries="$(bash scripts/images.sh --binaries-only "${images[@]}")"
version="$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' charts/kubevigil/Chart.yaml)"
context="$(mktemp -d -t kubevigil-images.XXXXXX)"
trap 'rm -f "${kubeconfig}"; rm -rf "${context}"' EXIT
for image in "${images[@]}"; do
  bin="$(awk -v n="${image}" '$1 == "binary" && $2 == n { print $3 }' <<<"${binaries}")"
  [[ -x "${bin}" ]] || die "no binary for ${image}"
  mkdir -p "${context}/${image}"
  install -m 0755 "${bin}" "${context}/${image}/${image}"
  log "building image ${registry}/${image}:${tag} (images/Containerfile, target ${image})"
  DOCKER_BUILDKIT=1 docker build -q -f images/Containerfile --target "${image}" \
    --build-arg "VERSION=${version}" --build-arg "REVISION=$(git rev-parse HEAD)" \
    -t "${registry}/${image}:${tag}" "${context}/${image}" >/dev/null
  # 3. Into the cluster's nodes.
  kind load docker-image --name "${cluster}" "${registry}/${image}:${tag}"
done

# 4. The chart, as a user installs it.
log "installing the chart"
KUBECONFIG="${kubeconfig}" helm upgrade --install kubevigil ./charts/kubevigil \
  -n kubevigil --create-namespace \
  --set clusterName=kind \
  --set capabilities.continuousScan=enable \
  --set controller.image.repository="${registry}/controller" \
  --set controller.image.tag="${tag}" \
  --set controller.image.pullPolicy=Never \
  --set scanJob.image.repository="${registry}/scan-job" \
  --set scanJob.image.tag="${tag}" \
  --set scanJob.image.pullPolicy=Never \
  --wait --timeout 5m

# 5. The scenario tests against kind.
log "running the scenario tests"
status=0
KUBECONFIG="${kubeconfig}" KUBEVIGIL_PROBE_IMAGE="${registry}/probe:${tag}" \
  cargo test -p kind-tests -- --test-threads=2 || status=$?

if [[ "${KEEP_CLUSTER:-1}" == "0" ]]; then
  log "deleting kind cluster ${cluster}"
  kind delete cluster --name "${cluster}"
fi
exit "${status}"
