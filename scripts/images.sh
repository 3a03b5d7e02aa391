#!/usr/bin/env bash
# kubevigil's container images, built without a daemon: static binaries (cargo), then one image
# per binary from images/Containerfile (buildah, daemonless, no base image pulled), written as
# OCI image archives that carry their full reference, with a CycloneDX SBOM next to each.
#
#   bash scripts/images.sh                               # controller scan-job (what `make images` runs)
#   bash scripts/images.sh controller scan-job probe pause
#   bash scripts/images.sh --no-sbom probe               # skip the SBOMs (images-reproducible.sh)
#   bash scripts/images.sh --binaries-only controller    # only the static binaries
#
# Names: controller, scan-job (the product), probe, pause (test images), or any binary of the
# workspace that has a target of the same name in images/Containerfile.
#
# For each image it writes, in ${KUBEVIGIL_IMAGES_DIR:-${CARGO_TARGET_DIR:-target}/images}:
#   <name>.oci.tar    OCI image archive (gzip layers), reference ghcr.io/kubevigil/<name>:<appVersion>
#                     in index.json (org.opencontainers.image.ref.name), so that
#                     `ctr -n k8s.io images import <name>.oci.tar` registers exactly that reference
#   <name>.cdx.json   CycloneDX SBOM of the binary's Rust dependencies (cargo-cyclonedx)
# and prints on stdout a short block per image and one machine-readable line:
#   image <name> <reference> <archive path> <manifest digest sha256:...> <compressed size in bytes>
# (the size is manifest + config + layers, as a registry stores them). Progress goes to stderr,
# one line per step; a failing step prints its log.
#
# Reproducible: the binaries are built with --locked, every build path remapped
# (--remap-path-prefix, -ffile-prefix-map) and a fixed date for C's __DATE__ and __TIME__; the
# images with buildah --timestamp $SOURCE_DATE_EPOCH (default: the commit's time),
# --omit-history, --layers=false and fixed labels. So one commit gives the same binaries and the
# same digests on any machine with the same toolchain. scripts/images-reproducible.sh
# (`make images-check`) proves it.
#
# Environment:
#   CARGO_TARGET_DIR          cargo's target directory (default ./target)
#   KUBEVIGIL_IMAGES_DIR      where archives and SBOMs go (default $CARGO_TARGET_DIR/images)
#   KUBEVIGIL_RUST_TARGET     Rust target triple (default: this machine's <arch>-unknown-linux-gnu);
#                             another architecture builds that platform's image (no RUN step,
#                             so no emulation is needed); set the cross linker through cargo's
#                             usual CARGO_TARGET_<TRIPLE>_LINKER and CC_<triple>
#   KUBEVIGIL_BUILDAH_DIR     parent of buildah's storage, a fresh run.XXXXXX directory per run,
#                             deleted at exit (default ~/.cache/kubevigil/buildah); never the
#                             system's /var/lib/containers
#   SOURCE_DATE_EPOCH         image timestamps (default: the time of the commit at HEAD)
#
# Needs: cargo, git, python3, buildah (installed with apt-get when missing and running as root).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

log() { printf 'images.sh: %s\n' "$*" >&2; }
die() { printf 'images.sh: error: %s\n' "$*" >&2; exit 1; }

sbom=1
binaries_only=0
names=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-sbom) sbom=0 ;;
    --binaries-only) binaries_only=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) names+=("$1") ;;
  esac
  shift
done
[[ ${#names[@]} -gt 0 ]] || names=(controller scan-job)

readonly REGISTRY="ghcr.io/kubevigil"
readonly CONTAINERFILE="${root}/images/Containerfile"

# --- what is built -------------------------------------------------------------------------
target_dir="${CARGO_TARGET_DIR:-${root}/target}"
mkdir -p "${target_dir}"
target_dir="$(cd "${target_dir}" && pwd)"
out_dir="${KUBEVIGIL_IMAGES_DIR:-${target_dir}/images}"
mkdir -p "${out_dir}"
out_dir="$(cd "${out_dir}" && pwd)"
cache_root="${KUBEVIGIL_CACHE_DIR:-${HOME:?HOME is not set}/.cache/kubevigil}"
buildah_dir="${KUBEVIGIL_BUILDAH_DIR:-${cache_root}/buildah}"

case "$(uname -m)" in
  x86_64 | amd64) host_arch=x86_64 ;;
  aarch64 | arm64) host_arch=aarch64 ;;
  *) die "unsupported machine $(uname -m)" ;;
esac
rust_target="${KUBEVIGIL_RUST_TARGET:-${host_arch}-unknown-linux-gnu}"
case "${rust_target}" in
  x86_64-unknown-linux-gnu) platform=linux/amd64 ;;
  aarch64-unknown-linux-gnu) platform=linux/arm64 ;;
  *) die "KUBEVIGIL_RUST_TARGET must be x86_64-unknown-linux-gnu or aarch64-unknown-linux-gnu, not ${rust_target}" ;;
esac

version="$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' charts/kubevigil/Chart.yaml)"
[[ -n "${version}" ]] || die "no appVersion in charts/kubevigil/Chart.yaml"
revision="$(git rev-parse HEAD)"
if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
  log "warning: the working tree has uncommitted changes; the images are labelled with ${revision:0:12} but built from the working tree"
fi
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}"

for name in "${names[@]}"; do
  [[ "${name}" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "bad image name ${name}"
  grep -qE "^FROM scratch AS ${name}\$" "${CONTAINERFILE}" \
    || die "images/Containerfile has no target '${name}' (FROM scratch AS ${name})"
done

# --- tools ----------------------------------------------------------------------------------
command -v cargo >/dev/null || die "cargo is required"
command -v python3 >/dev/null || die "python3 is required"
if [[ ${binaries_only} -eq 0 ]] && ! command -v buildah >/dev/null; then
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing buildah with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null \
      || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null; } \
      || die "apt-get install buildah failed"
  else
    die "buildah is required (Debian/Ubuntu: sudo apt-get install buildah)"
  fi
fi

work="$(mktemp -d "${out_dir}/.work.XXXXXX")"
cleanup() {
  if [[ -n "${storage:-}" ]]; then
    rm -rf "${storage}"
  fi
  if [[ -n "${sbom_cleanup+x}" ]]; then
    remove_sboms || true
  fi
  rm -rf "${work}"
}
trap cleanup EXIT

# Runs a step quietly: its output goes to a log that is shown only when it fails.
quiet() {
  local step_log="${work}/step.log"
  if ! "$@" >"${step_log}" 2>&1; then
    cat "${step_log}" >&2
    die "failed: $*"
  fi
}

# --- 1. static binaries ---------------------------------------------------------------------
# The package of each binary, from cargo metadata (no network: the lock file is used as is).
packages="$(cargo metadata --no-deps --locked --offline --format-version 1 2>/dev/null \
  || cargo metadata --no-deps --locked --format-version 1)"
package_of() {
  python3 -c '
import json, sys
name = sys.argv[1]
meta = json.load(sys.stdin)
hits = [p["name"] for p in meta["packages"] for t in p["targets"] if "bin" in t["kind"] and t["name"] == name]
if len(hits) != 1:
    sys.exit(f"images.sh: error: {len(hits)} workspace packages have a binary named {name}")
print(hits[0])
' "$1" <<<"${packages}"
}
declare -A package
for name in "${names[@]}"; do
  package[${name}]="$(package_of "${name}")" || exit 1
done

# crt-static: glibc linked in, no dynamic loader needed (there is no musl target here). With an
# explicit --target, RUSTFLAGS reach only the target's crates: build scripts and proc-macros stay
# dynamic host programs. The remaps make the binaries independent of where the clone, cargo's
# registry and the target directory live.
cargo_home="${CARGO_HOME:-${HOME}/.cargo}"
remaps=("${root}=/kubevigil" "${cargo_home}=/cargo" "${target_dir}=/target")
rustflags=(-C target-feature=+crt-static)
cflags=()
for m in "${remaps[@]}"; do
  rustflags+=("--remap-path-prefix=${m}")
  cflags+=("-ffile-prefix-map=${m}")
done
unset RUSTFLAGS
CARGO_ENCODED_RUSTFLAGS="$(IFS=$'\x1f'; printf '%s' "${rustflags[*]}")"
export CARGO_ENCODED_RUSTFLAGS
triple_var="${rust_target//-/_}"
export "CFLAGS_${triple_var}=${cflags[*]}"
bin_dir="${target_dir}/${rust_target}/release"
# 1980-01-01T00:00:00Z, the date reproducible-builds tools commonly use for "no date".
readonly C_SOURCE_DATE_EPOCH=315532800

# An ELF file without a program interpreter (PT_INTERP) needs no dynamic loader: static.
is_static() {
  python3 - "$1" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as f:
    data = f.read(1 << 20)
if data[:4] != b"\x7fELF" or data[4] != 2:
    sys.exit("not a 64-bit ELF file")
end = "<" if data[5] == 1 else ">"
phoff, = struct.unpack_from(end + "Q", data, 0x20)
phentsize, phnum = struct.unpack_from(end + "HH", data, 0x36)
for i in range(phnum):
    p_type, = struct.unpack_from(end + "I", data, phoff + i * phentsize)
    if p_type == 3:  # PT_INTERP
        sys.exit("dynamically linked (has a program interpreter)")
PY
}

total=${#names[@]}
i=0
for name in "${names[@]}"; do
  i=$((i + 1))
  pkg="${package[${name}]}"
  # One cargo invocation per binary: features are unified across the packages of one build, so
  # building binaries together could change each one with the list of names.
  log "[${i}/${total}] ${name}: cargo build --release --locked --target ${rust_target} -p ${pkg} --bin ${name} (crt-static)"
  # A fixed SOURCE_DATE_EPOCH for the C code of dependencies: mimalloc puts __DATE__ and
  # __TIME__ in its banner, which gcc takes from SOURCE_DATE_EPOCH when set (else the binary
  # changes with the build time). Fixed rather than the commit's time because the cc crate
  # reruns build scripts (ring, mimalloc) when it changes, which would rebuild most of the graph
  # after every commit.
  SOURCE_DATE_EPOCH="${C_SOURCE_DATE_EPOCH}" nice -n 10 cargo build --quiet --release --locked \
    --target "${rust_target}" -p "${pkg}" --bin "${name}" >&2 || die "cargo build of ${name} failed"
  bin="${bin_dir}/${name}"
  why="$(is_static "${bin}" 2>&1)" || die "${bin} is not static: ${why}"
  if [[ "${rust_target}" == "${host_arch}-unknown-linux-gnu" ]]; then
    if [[ "${name}" == pause ]]; then
      # A sandbox program sleeps until it is signalled: it must start and still run after 1 s.
      rc=0
      timeout 1 "${bin}" >/dev/null 2>&1 || rc=$?
      [[ ${rc} -eq 124 || ${rc} -eq 0 ]] || die "${bin} does not run (exit ${rc})"
    else
      quiet timeout 20 "${bin}" --help
    fi
  fi
done
if [[ ${binaries_only} -eq 1 ]]; then
  for name in "${names[@]}"; do
    printf 'binary %s %s %s\n' "${name}" "${bin_dir}/${name}" "$(sha256sum "${bin_dir}/${name}" | cut -d' ' -f1)"
  done
  exit 0
fi

# --- 2. SBOMs -------------------------------------------------------------------------------
# cargo-cyclonedx describes each workspace binary's package dependency graph for the target
# (--describe binaries writes <bin>_bin.cdx.json next to each package's Cargo.toml; they are
# moved out or deleted at once). The SBOM is made reproducible too: its timestamp is
# SOURCE_DATE_EPOCH (honoured by cargo-cyclonedx), its serial number is derived from the image
# reference and the commit, and the clone's path becomes /kubevigil.
readonly CYCLONEDX_VERSION="0.5.9"
remove_sboms() {
  python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
for p in meta["packages"]:
    for t in p["targets"]:
        if "bin" in t["kind"]:
            f = os.path.join(os.path.dirname(p["manifest_path"]), t["name"] + "_bin.cdx.json")
            if os.path.exists(f):
                os.remove(f)
' <<<"${packages}"
}
if [[ ${sbom} -eq 1 ]]; then
  bash scripts/cargo-tool.sh cargo-cyclonedx "${CYCLONEDX_VERSION}" cyclonedx
  log "SBOMs: cargo cyclonedx ${CYCLONEDX_VERSION} --describe binaries --target ${rust_target}"
  sbom_cleanup=1
  quiet cargo cyclonedx --manifest-path "${root}/Cargo.toml" --format json --spec-version 1.5 \
    --describe binaries --target "${rust_target}" --no-build-deps -q
  for name in "${names[@]}"; do
    pkg="${package[${name}]}"
    pkg_dir="$(python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in meta["packages"] if p["name"] == sys.argv[1]))' "${pkg}" <<<"${packages}")"
    python3 - "${pkg_dir}/${name}_bin.cdx.json" "${out_dir}/${name}.cdx.json" \
      "${REGISTRY}/${name}:${version}@${revision}" "${root}" <<'PY' || die "no SBOM for ${name}"
import json, sys, uuid
src, dst, ident, root = sys.argv[1:]
with open(src) as f:
    text = f.read()
text = text.replace("file://" + root, "file:///kubevigil")
bom = json.loads(text)
bom["serialNumber"] = "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, ident))
with open(dst, "w") as f:
    json.dump(bom, f, indent=2)
    f.write("\n")
PY
  done
  remove_sboms
  unset sbom_cleanup
fi

# --- 3. images ------------------------------------------------------------------------------
# buildah's storage is a fresh directory under the project's cache for each run (never
# /var/lib/containers), deleted at exit with every working container and image in it, so
# concurrent runs cannot see each other and nothing accumulates. vfs needs no mounts;
# --isolation chroot needs no OCI runtime (the Containerfile runs nothing anyway). Our own
# signature policy accepts anything: nothing is pulled.
mkdir -p "${buildah_dir}"
storage="$(mktemp -d "${buildah_dir}/run.XXXXXX")"
policy="${storage}/policy.json"
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"${policy}"
buildah_cmd=(buildah --root "${storage}/root" --runroot "${storage}/runroot" --storage-driver vfs)
export TMPDIR="${work}" BUILDAH_ISOLATION=chroot

i=0
for name in "${names[@]}"; do
  i=$((i + 1))
  ref="${REGISTRY}/${name}:${version}"
  archive="${out_dir}/${name}.oci.tar"
  # A fresh context holding only this binary.
  context="${work}/context-${name}"
  mkdir -p "${context}"
  install -m 0755 "${bin_dir}/${name}" "${context}/${name}"
  log "[${i}/${total}] ${name}: buildah build --target ${name} --platform ${platform} -> ${ref}"
  quiet "${buildah_cmd[@]}" build --quiet --signature-policy "${policy}" \
    --isolation chroot --layers=false --omit-history --identity-label=false \
    --timestamp "${SOURCE_DATE_EPOCH}" --platform "${platform}" \
    --build-arg "VERSION=${version}" --build-arg "REVISION=${revision}" \
    --target "${name}" -f "${CONTAINERFILE}" -t "${ref}" "${context}"
  log "[${i}/${total}] ${name}: buildah push -> ${archive}"
  rm -f "${archive}.tmp"
  quiet "${buildah_cmd[@]}" push --quiet --signature-policy "${policy}" --format oci \
    "${ref}" "oci-archive:${archive}.tmp:${ref}"
  mv -f "${archive}.tmp" "${archive}"
done

# --- 4. what was built ----------------------------------------------------------------------
lines=()
for name in "${names[@]}"; do
  ref="${REGISTRY}/${name}:${version}"
  archive="${out_dir}/${name}.oci.tar"
  # The manifest digest and blob sizes, read from the archive's index.json and manifest.
  line="$(python3 - "${archive}" "${ref}" <<'PY'
import json, sys, tarfile
path, ref = sys.argv[1:]
with tarfile.open(path) as tar:
    index = json.load(tar.extractfile("index.json"))
    [entry] = index["manifests"]
    if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") != ref:
        sys.exit(f"{path}: index.json does not name {ref}")
    digest = entry["digest"]
    manifest = json.load(tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1]))
size = entry["size"] + manifest["config"]["size"] + sum(l["size"] for l in manifest["layers"])
print(digest, size)
PY
)" || die "cannot read ${archive}"
  digest="${line% *}"
  size="${line#* }"
  printf '%s\n  reference  %s\n  archive    %s\n  digest     %s\n  size       %s bytes compressed (%s MiB)\n' \
    "${name}" "${ref}" "${archive}" "${digest}" "${size}" "$(awk -v s="${size}" 'BEGIN { printf "%.1f", s / 1048576 }')"
  [[ ${sbom} -eq 1 ]] && printf '  sbom       %s\n' "${out_dir}/${name}.cdx.json"
  lines+=("image ${name} ${ref} ${archive} ${digest} ${size}")
done
printf '%s\n' "${lines[@]}"
