#!/usr/bin/env bash
# Lints the GitHub Actions workflows (.github/workflows/*.yml) with actionlint, which also runs
# ShellCheck on `run:` scripts when the shellcheck program is on PATH.
#
#   bash scripts/workflow-lint.sh [VERSION]     # default v1.7.12 (`make workflow-lint`)
#
# actionlint is installed from the Go module proxy (go install github.com/rhysd/actionlint/
# cmd/actionlint@VERSION) into ${KUBEVIGIL_CACHE_DIR:-~/.cache/kubevigil}/tools/actionlint-VERSION/
# once; later runs use the cached binary.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:-v1.7.12}"
cache_root="${KUBEVIGIL_CACHE_DIR:-${HOME:?HOME is not set}/.cache/kubevigil}"
bin_dir="${cache_root}/tools/actionlint-${version}"
actionlint="${bin_dir}/actionlint"

if [[ ! -x "${actionlint}" ]]; then
  command -v go >/dev/null 2>&1 || {
    echo "workflow-lint.sh: error: go is required to install actionlint ${version}" >&2
    exit 1
  }
  echo "workflow-lint.sh: installing actionlint ${version} from the Go module proxy (one-time)" >&2
  mkdir -p "${bin_dir}"
  GOBIN="${bin_dir}" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@${version}" >&2
fi

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
[[ ${#workflows[@]} -gt 0 ]] || { echo "workflow-lint.sh: no workflows in .github/workflows" >&2; exit 1; }
if command -v shellcheck >/dev/null 2>&1; then
  with="with shellcheck $(shellcheck --version | awk '/^version:/ { print $2 }')"
else
  with="without shellcheck (not installed)"
fi
"${actionlint}" -no-color "${workflows[@]}"
echo "workflow-lint.sh: actionlint ${version} ${with}: ${workflows[*]} ok" >&2
