#!/usr/bin/env bash
# Fetches the OpenReports CRDs (openreports.io/v1alpha1 Report and ClusterReport) from the Go
# module proxy, as the OpenReports project publishes them (module
# github.com/openreports/reports-api), and prints the directory holding their YAML on stdout.
#
# Cached under ${KUBEVIGIL_CACHE_DIR:-$HOME/.cache/kubevigil}/openreports/<version>/, like the
# control plane build: a cache hit does no network access. The module zip's SHA-256 is recorded
# beside it on first download and checked on later runs. Progress goes to stderr.
set -euo pipefail

VERSION="${OPENREPORTS_VERSION:-v0.2.1}"
MODULE="github.com/openreports/reports-api"
cache="${KUBEVIGIL_CACHE_DIR:-$HOME/.cache/kubevigil}/openreports/$VERSION"
crds="$cache/crds"

if [[ -f "$crds/openreports.io_reports.yaml" && -f "$crds/openreports.io_clusterreports.yaml" ]]; then
    printf '%s\n' "$(cd "$crds" && pwd -P)"
    exit 0
fi

proxy="${GOPROXY:-}"
if [[ -z "$proxy" ]] && command -v go >/dev/null 2>&1; then
    proxy="$(go env GOPROXY)"
fi
proxy="${proxy:-https://proxy.golang.org}"
proxy="${proxy%%,*}"
[[ "$proxy" == direct || "$proxy" == off ]] && proxy=https://proxy.golang.org

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
url="$proxy/$MODULE/@v/$VERSION.zip"
echo "openreports-crds: downloading $url" >&2
curl -fsSL --retry 3 -o "$tmp/module.zip" "$url"
sum="$(sha256sum "$tmp/module.zip" | cut -d' ' -f1)"
if [[ -f "$cache/module.zip.sha256" ]] && [[ "$(cat "$cache/module.zip.sha256")" != "$sum" ]]; then
    echo "openreports-crds: $url changed (sha256 $sum, recorded $(cat "$cache/module.zip.sha256"))" >&2
    exit 1
fi
mkdir -p "$tmp/crds"
for kind in reports clusterreports; do
    unzip -p "$tmp/module.zip" "$MODULE@$VERSION/config/crd/openreports.io_$kind.yaml" >"$tmp/crds/openreports.io_$kind.yaml"
    grep -q "^  name: $kind.openreports.io$" "$tmp/crds/openreports.io_$kind.yaml" \
        || { echo "openreports-crds: the module has no CRD $kind.openreports.io" >&2; exit 1; }
done
printf '%s\n' "$sum" >"$cache/module.zip.sha256"
rm -rf "$crds"
mv "$tmp/crds" "$crds"
printf '%s\n' "$(cd "$crds" && pwd -P)"
