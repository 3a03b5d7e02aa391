#!/usr/bin/env bash
# Proves that kubevigil's images are reproducible: builds each image twice and fails when the
# two manifest digests differ (`make images-check`, a step of `make test`).
#
#   bash scripts/images-reproducible.sh [NAME...]               # default: controller scan-job
#   bash scripts/images-reproducible.sh --from-clone [NAME...]  # the second build from a fresh
#                                                               # clone of HEAD at another path,
#                                                               # binaries rebuilt from nothing
#
# Default mode: both builds run scripts/images.sh with a fresh, empty buildah storage each and
# their own output directory; each build copies the binaries into a fresh build context. The
# binaries come from the same cargo build (cached in the release target directory, so the step
# is quick after the first build).
#
# --from-clone (slow: a full release build, about 10 minutes on 2 cores) additionally proves
# that the binaries are deterministic: the second build clones the commit at HEAD into a
# temporary directory and builds everything there with its own empty CARGO_TARGET_DIR. Only
# committed changes are in the clone, so run it on a clean working tree.
#
# Prints one line per image on stdout: `reproducible <name> <digest>`; on failure the two
# digests, the differing blobs, and exit 1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

log() { printf 'images-reproducible.sh: %s\n' "$*" >&2; }
die() { printf 'images-reproducible.sh: error: %s\n' "$*" >&2; exit 1; }

from_clone=0
names=()
for arg in "$@"; do
  case "${arg}" in
    --from-clone) from_clone=1 ;;
    -*) die "unknown option ${arg}" ;;
    *) names+=("${arg}") ;;
  esac
done
[[ ${#names[@]} -gt 0 ]] || names=(controller scan-job)

target_dir="${CARGO_TARGET_DIR:-${root}/target}"
mkdir -p "${target_dir}"
work="$(mktemp -d "${target_dir}/.images-check.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
# One SOURCE_DATE_EPOCH for both builds (images.sh defaults to the commit's time anyway).
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}"

# build LABEL REPO_DIR [ENV...]: runs REPO_DIR's images.sh with fresh storage and output dirs and
# writes its `image` lines to ${work}/LABEL.lines.
build() {
  local label=$1 repo=$2
  shift 2
  log "build ${label}: fresh buildah storage ${work}/${label}/buildah"
  mkdir -p "${work}/${label}"
  env "$@" KUBEVIGIL_BUILDAH_DIR="${work}/${label}/buildah" KUBEVIGIL_IMAGES_DIR="${work}/${label}/images" \
    bash "${repo}/scripts/images.sh" --no-sbom "${names[@]}" >"${work}/${label}/out"
  grep '^image ' "${work}/${label}/out" >"${work}/${label}.lines"
}

build first "${root}"
if [[ ${from_clone} -eq 1 ]]; then
  if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
    log "warning: uncommitted changes are in the first build but not in the clone"
  fi
  log "cloning HEAD ($(git rev-parse --short HEAD)) into ${work}/clone and building it with an empty target directory"
  git clone -q --no-checkout --no-hardlinks "${root}" "${work}/clone"
  git -C "${work}/clone" checkout -q --detach "$(git rev-parse HEAD)"
  build second "${work}/clone" CARGO_TARGET_DIR="${work}/clone-target"
  # The binaries themselves, byte for byte.
  triple="$(uname -m | sed 's/amd64/x86_64/; s/arm64/aarch64/')-unknown-linux-gnu"
  for name in "${names[@]}"; do
    a="$(sha256sum <"${target_dir}/${triple}/release/${name}" | cut -d' ' -f1)"
    b="$(sha256sum <"${work}/clone-target/${triple}/release/${name}" | cut -d' ' -f1)"
    [[ "${a}" == "${b}" ]] || die "binary ${name} differs between ${root} (${a}) and the clone (${b})"
    printf 'binary-reproducible %s sha256:%s\n' "${name}" "${a}"
  done
else
  build second "${root}"
fi

failed=0
for name in "${names[@]}"; do
  a="$(awk -v n="${name}" '$2 == n { print $5 }' "${work}/first.lines")"
  b="$(awk -v n="${name}" '$2 == n { print $5 }' "${work}/second.lines")"
  [[ -n "${a}" && -n "${b}" ]] || die "no digest for ${name}"
  if [[ "${a}" == "${b}" ]]; then
    printf 'reproducible %s %s\n' "${name}" "${a}"
  else
    failed=1
    printf 'NOT reproducible %s: %s then %s\n' "${name}" "${a}" "${b}"
    # Which blobs differ (config, layer): names and sizes of each archive's blobs.
    for label in first second; do
      echo "  ${label}:"
      tar -tvf "${work}/${label}/images/${name}.oci.tar" | awk '/blobs\/sha256\/./ { print "    " $3, $6 }'
    done
  fi
done
[[ ${failed} -eq 0 ]] || die "the two builds gave different digests"
log "ok: ${#names[@]} image(s), two builds, the same digests"
