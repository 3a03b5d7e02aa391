#!/usr/bin/env bash
# Puts the offline RustSec advisory database snapshot where deny.toml's db-path points cargo-deny
# (the RustSec database cannot be fetched from this project's machines):
#
#   bash scripts/advisory-db.sh ../shared/advisory-db/advisory-db.bundle
#
# It clones the git bundle into ~/.cache/kubevigil/advisory-dbs/advisory-db-3157b0e258782691,
# the directory cargo-deny 0.18+ uses for the default RustSec URL, and clones it again when the
# bundle holds another commit (a newer snapshot). Progress goes to stderr, one line.
set -euo pipefail

bundle="${1:?usage: advisory-db.sh PATH/TO/advisory-db.bundle}"
# Must match deny.toml's [advisories] db-path.
db_root="${HOME:?HOME is not set}/.cache/kubevigil/advisory-dbs"
db="${db_root}/advisory-db-3157b0e258782691"

[[ -f "${bundle}" ]] || {
  echo "advisory-db.sh: error: no advisory database snapshot at ${bundle} (set SHARED=... for make)" >&2
  exit 1
}
want="$(git bundle list-heads "${bundle}" | awk '$2 == "HEAD" { print $1 }')"
[[ -n "${want}" ]] || want="$(git bundle list-heads "${bundle}" | awk 'NR == 1 { print $1 }')"
have="$(git -C "${db}" rev-parse -q --verify HEAD 2>/dev/null || true)"
if [[ "${have}" != "${want}" ]]; then
  mkdir -p "${db_root}"
  tmp="$(mktemp -d "${db_root}/.clone.XXXXXX")"
  trap 'rm -rf "${tmp}"' EXIT
  git clone -q "${bundle}" "${tmp}/db"
  rm -rf "${db}"
  mv "${tmp}/db" "${db}"
fi
echo "advisory-db.sh: RustSec snapshot $(git -C "${db}" log -1 --format='%h of %cs') in ${db}" >&2
